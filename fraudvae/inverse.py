"""Model-space rows back to a frame of the schema's columns: what `FraudVAE.sample` draws, in the
units and types of the training file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraudvae.preprocess import Preprocessor


def to_columns(pre: Preprocessor, numeric: np.ndarray, binary: np.ndarray, categorical: np.ndarray) -> pd.DataFrame:
    """Model-space rows (scaled numbers, 0/1 flags, category indices) back to the schema's
    columns in original units: numbers un-scaled (and un-logged) within the training range at the
    training precision, gaps where a missing indicator is 1, two-valued numbers as their two
    values, other binary columns as booleans, categories as their training keys ("other" and
    "missing" as gaps)."""
    n = len(numeric)
    flags = dict(zip(pre.flag_layout(), binary.T, strict=True))
    out: dict[str, pd.Series] = {}
    for j, (name, s) in enumerate(pre.numeric.items()):
        t = numeric[:, j].astype(np.float64) * s.scale + s.center
        x = np.sign(t) * np.expm1(np.abs(t)) if s.log else t
        x = np.clip(x, -np.inf if s.min is None else s.min, np.inf if s.max is None else s.max)
        decimals = s.decimals
        if decimals is not None:
            x = np.round(x, decimals)
        if s.point_mass is not None:
            x = np.where(flags[("point_mass", name)] > 0.5, s.point_mass, x)
        gap = flags.get(("missing", name), np.zeros(n)) > 0.5
        col = pd.Series(np.where(gap, np.nan, x))
        out[name] = col.astype("Int64") if decimals == 0 else col
    for name, b in pre.binary.items():
        on = flags[("value", name)] > 0.5
        gap = flags.get(("missing", name), np.zeros(n)) > 0.5
        if b.low is None:
            col = pd.Series(on, dtype="boolean")
        else:
            col = pd.Series(np.where(on, float(b.high or 0.0), b.low))
            if col.dropna().map(float.is_integer).all():
                col = col.astype("Int64")
        col[gap] = pd.NA
        out[name] = col
    for j, (name, c) in enumerate(pre.categorical.items()):
        keys = np.array([None, None, *c.vocabulary], dtype=object)
        col = pd.Series(keys[categorical[:, j]], dtype=object)
        known = col.dropna()
        if len(known) and known.map(lambda k: k.lstrip("-").isdigit() and str(int(k)) == k).all():
            col = pd.to_numeric(col).astype("Int64")  # integer codes stay integers ("007" stays text)
        out[name] = col
    # time columns are not generated: the model knows their hour and weekday, not a date
    return pd.DataFrame({name: out[name] for name in pre.schema.names() if name in out})
