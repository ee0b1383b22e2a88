"""Model-space rows back to a frame of the schema's columns: what `FraudVAE.sample` draws, in the
units and types of the training file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraudvae.preprocess import Preprocessor
from fraudvae.specs import TimeSpec
from fraudvae.values import WEEKDAYS


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
    for k, (name, spec) in enumerate(pre.times.items()):
        j = len(pre.categorical) + 2 * k  # each time column's hour, then weekday, follow the categories
        hours = np.array([None, None, *spec.hour], dtype=object)[categorical[:, j]]
        days = np.array([None, None, *spec.weekday], dtype=object)[categorical[:, j + 1]]
        out[name] = _times(hours, days, spec)
    return pd.DataFrame({name: out[name] for name in pre.schema.names() if name in out})


REFERENCE_MONDAY = pd.Timestamp("2024-01-01")  # sampled times fall in this week


def _times(hours: np.ndarray, days: np.ndarray, spec: TimeSpec) -> pd.Series:
    """A time column from sampled hours of day and weekdays: the model knows only those, not dates,
    so each time is that hour (on the hour) of that weekday in the week of `REFERENCE_MONDAY`,
    written as the training file wrote times (epoch seconds or milliseconds, or its text format)."""
    gap = np.array([h is None or d is None for h, d in zip(hours, days, strict=True)], dtype=bool)
    day = np.array([WEEKDAYS.index(d) if d in WEEKDAYS else 0 for d in days])
    hour = np.array([int(h) if h is not None and str(h).isdigit() else 0 for h in hours])
    when = pd.Series(REFERENCE_MONDAY + pd.to_timedelta(day * 24 + hour, unit="h"))
    if spec.unit is not None:
        col = pd.Series(when.astype("int64") // (10**9 if spec.unit == "s" else 10**6)).astype("Int64")
        col[gap] = pd.NA
        return col
    text = when.dt.strftime(spec.format) if spec.format else when.map(lambda t: t.isoformat())
    return pd.Series(np.where(gap, None, text.to_numpy(dtype=object)), dtype=object)
