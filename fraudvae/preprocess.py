"""Turn a frame into model inputs: scaled numbers, 0/1 flags and category indices.

All state is fitted on training normals only and is plain JSON (`to_dict`/`from_dict`).
Missing values: numeric and binary gaps are imputed, plus a missing-indicator feature when the
training data had gaps in that column; categorical gaps are a category of their own. Rare
training categories and categories never seen in training share one "other" bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudvae.errors import SchemaError
from fraudvae.schema import FALSE_STRINGS, TRUE_STRINGS, Schema, show

OTHER, MISSING = 0, 1  # reserved category indices; the training vocabulary starts at 2
CLIP = 1e3  # scaled numbers are clipped here so that any finite input gives a finite score


@dataclass(frozen=True)
class PreprocessConfig:
    min_category_count: int = 5  # rarer training categories go to "other"
    max_categories: int = 100  # per column, the most frequent ones; the rest go to "other"
    log_skew: float = 2.0  # non-negative columns skewed beyond this are modelled on a log scale


@dataclass(frozen=True)
class Encoded:
    """Model inputs for n rows. ``binary`` holds binary columns, then missing indicators."""

    numeric: np.ndarray  # (n, n_numeric) float32, scaled
    numeric_observed: np.ndarray  # (n, n_numeric) float32, 0 where a value was imputed
    binary: np.ndarray  # (n, n_binary) float32 in [0, 1]
    categorical: np.ndarray  # (n, n_categorical) int64 indices

    def __len__(self) -> int:
        return len(self.numeric)

    def take(self, idx: np.ndarray) -> Encoded:
        return Encoded(self.numeric[idx], self.numeric_observed[idx], self.binary[idx], self.categorical[idx])


class Preprocessor:
    """Fitted preprocessing state for one schema. Build with `fit` or `from_dict`."""

    def __init__(self, schema: Schema, state: dict) -> None:
        self.schema = schema
        self.state = state

    # ---- fitting
    @classmethod
    def fit(cls, df: pd.DataFrame, schema: Schema, config: PreprocessConfig = PreprocessConfig()) -> Preprocessor:
        numeric, binary, categorical = {}, {}, {}
        for name in schema.names("numeric"):
            x = _numeric(df[name], name)
            ok = x[np.isfinite(x)]
            if ok.size == 0:  # the schema saw values, but not among the training normals
                ok = np.zeros(1)
            log = bool(ok.min() >= 0 and _skew(ok) > config.log_skew)
            t = np.log1p(ok) if log else ok
            center = float(np.mean(t))
            scale = float(np.std(t)) or 1.0
            numeric[name] = {"log": log, "center": center, "scale": scale,
                             "fill": float(np.median(t)), "indicator": bool(np.isnan(x).any())}
        for name in schema.names("binary"):
            s = df[name]
            spec = {"low": None, "high": None}
            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                vals = np.unique(s.dropna().to_numpy(dtype=float))
                spec = {"low": float(vals[0]), "high": float(vals[-1])}
            x = _binary(s, name, spec)
            ok = x[~np.isnan(x)]
            fill = float(np.round(ok.mean())) if ok.size else 0.0
            binary[name] = {**spec, "fill": fill, "indicator": bool(np.isnan(x).any())}
        for name in schema.names("categorical"):
            counts = _keys(df[name]).value_counts(dropna=True)
            kept = counts[counts >= config.min_category_count].index[: config.max_categories]
            categorical[name] = {"vocabulary": [str(k) for k in kept]}
        return cls(schema, {"numeric": numeric, "binary": binary, "categorical": categorical})

    # ---- layout
    @property
    def n_numeric(self) -> int:
        return len(self.state["numeric"])

    @property
    def binary_owners(self) -> list[str]:
        """The column each Bernoulli feature belongs to (binary columns, then missing indicators)."""
        owners = list(self.state["binary"])
        owners += [n for n, s in self.state["numeric"].items() if s["indicator"]]
        owners += [n for n, s in self.state["binary"].items() if s["indicator"]]
        return owners

    @property
    def cardinalities(self) -> list[int]:
        return [len(s["vocabulary"]) + 2 for s in self.state["categorical"].values()]

    def feature_owners(self) -> list[str]:
        """Column name of every likelihood term, in model order: numeric, Bernoulli, categorical."""
        return list(self.state["numeric"]) + self.binary_owners + list(self.state["categorical"])

    def vocabulary(self, name: str) -> list[str]:
        return ["<other>", "<missing>", *self.state["categorical"][name]["vocabulary"]]

    # ---- transforming
    def transform(self, df: pd.DataFrame) -> Encoded:
        """Encode `df` (extra columns ignored). Raises `SchemaError` naming a missing column or
        a value of the wrong type with its row."""
        self.schema.check(df)
        n = len(df)
        num = np.zeros((n, self.n_numeric), dtype=np.float32)
        observed = np.ones_like(num)
        indicators = []
        for j, (name, s) in enumerate(self.state["numeric"].items()):
            x = _numeric(df[name], name)
            gap = np.isnan(x)
            t = np.log1p(np.maximum(x, 0.0)) if s["log"] else x
            t = np.where(gap, s["fill"], t)
            num[:, j] = np.clip((t - s["center"]) / s["scale"], -CLIP, CLIP)
            if s["indicator"]:
                observed[:, j] = ~gap
                indicators.append(gap)
        bins, bin_indicators = [], []
        for name, s in self.state["binary"].items():
            x = _binary(df[name], name, s)
            gap = np.isnan(x)
            bins.append(np.where(gap, s["fill"], x))
            if s["indicator"]:
                bin_indicators.append(gap)
        cols = bins + indicators + bin_indicators
        binary = np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((n, 0), np.float32)
        cat = np.zeros((n, len(self.state["categorical"])), dtype=np.int64)
        for j, (name, s) in enumerate(self.state["categorical"].items()):
            keys = _keys(df[name])
            idx = pd.Index(s["vocabulary"], dtype=object).get_indexer(keys) + 2
            idx[idx == 1] = OTHER  # get_indexer's -1: a category not in the vocabulary
            idx[keys.isna().to_numpy()] = MISSING
            cat[:, j] = idx
        return Encoded(num, observed, binary, cat)

    def to_dict(self) -> dict:
        return self.state

    @classmethod
    def from_dict(cls, schema: Schema, d: dict) -> Preprocessor:
        return cls(schema, d)


def _bad_row(s: pd.Series, bad: np.ndarray) -> str:
    i = int(np.flatnonzero(bad)[0])
    return f"row {s.index[i]}: {show(s.iloc[i])}"


def _numeric(s: pd.Series, name: str) -> np.ndarray:
    """A column as float64 with NaN for gaps; text or infinities are refused, naming the row."""
    if pd.api.types.is_bool_dtype(s):
        x = s.to_numpy(dtype=float)
    elif pd.api.types.is_numeric_dtype(s):
        x = s.to_numpy(dtype=float, na_value=np.nan)
    else:
        coerced = pd.to_numeric(s, errors="coerce")
        bad = (coerced.isna() & s.notna()).to_numpy()
        if bad.any():
            raise SchemaError(f"column {name!r} must be numeric, got {_bad_row(s, bad)}")
        x = coerced.to_numpy(dtype=float, na_value=np.nan)
    inf = np.isinf(x)
    if inf.any():
        raise SchemaError(f"column {name!r} must be finite, got {_bad_row(s, inf)}")
    return x


def _binary(s: pd.Series, name: str, spec: dict) -> np.ndarray:
    """A binary column as 0/1 floats with NaN for gaps."""
    if spec.get("low") is not None:
        x = _numeric(s, name)
        low, high = spec["low"], spec["high"]
        if high == low:  # one level among the training normals: any other value is the other level
            return np.where(np.isnan(x), np.nan, (x != low).astype(float))
        return np.clip((x - low) / (high - low), 0.0, 1.0)
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float)
    text = s.map(lambda v: None if _isna(v) else str(v).strip().lower())
    pos, neg = text.isin(TRUE_STRINGS).to_numpy(), text.isin(FALSE_STRINGS).to_numpy()
    gap = text.isna().to_numpy()
    bad = ~(pos | neg | gap)
    if bad.any():
        raise SchemaError(f"column {name!r} must be true/false, got {_bad_row(s, bad)}")
    return np.where(gap, np.nan, pos.astype(float))


def _isna(v: object) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT


def _key(v: object) -> str | None:
    if _isna(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    return str(v).strip()


def _keys(s: pd.Series) -> pd.Series:
    """Category keys (strings, None for gaps) that agree however the column was parsed: 1, 1.0 and
    "1" are one category. Vectorised for the common column types, value by value otherwise."""
    if pd.api.types.is_bool_dtype(s):
        return s.map({True: "True", False: "False"}).astype(object)
    if pd.api.types.is_numeric_dtype(s):
        x = s.to_numpy(dtype=float, na_value=np.nan)
        integral = np.isfinite(x) & (np.mod(x, 1) == 0) & (np.abs(x) < 2**53)
        out = np.where(integral, np.where(integral, x, 0).astype(np.int64).astype(str), x.astype(str))
        return pd.Series(np.where(np.isnan(x), None, out), index=s.index, dtype=object)
    if pd.api.types.infer_dtype(s, skipna=True) == "string":
        return s.str.strip().astype(object).where(s.notna(), None)
    return s.map(_key).astype(object)


def _skew(x: np.ndarray) -> float:
    sd = x.std()
    return float(np.mean(((x - x.mean()) / sd) ** 3)) if sd > 0 else 0.0
