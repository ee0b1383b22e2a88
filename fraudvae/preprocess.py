"""Turn a frame into model inputs: scaled numbers, 0/1 flags and category indices.

All state is fitted on training normals only and is plain JSON (`to_dict`/`from_dict`).
Missing values: numeric and binary gaps are imputed, plus a missing-indicator feature when the
training data had gaps in that column; categorical gaps are a category of their own. Optionally
(``spike_share``), a numeric column with one value holding a large share of the training rows (a
count that is mostly 0, a fee that is mostly the standard one) gets a point mass: an indicator
"at that value", and the Gaussian only for the other values (a density cannot describe an atom;
fitted as one, its variance collapses onto the atom and every other value looks extreme). Rare
training categories and categories never seen in training share one "other" bucket.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat

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
    spike_share: float | None = None  # a numeric value held by at least this share of rows is a point mass


@dataclass(frozen=True)
class Encoded:
    """Model inputs for n rows. ``binary`` holds binary columns, then missing indicators."""

    numeric: np.ndarray  # (n, n_numeric) float32, scaled
    numeric_observed: np.ndarray  # (n, n_numeric) float32, 0 where a value was imputed
    binary: np.ndarray  # (n, n_binary) float32 in [0, 1]
    categorical: np.ndarray  # (n, n_categorical) int64 indices

    def __len__(self) -> int:
        return len(self.numeric)

    def take(self, idx: np.ndarray | slice) -> Encoded:
        return Encoded(self.numeric[idx], self.numeric_observed[idx], self.binary[idx], self.categorical[idx])

    @staticmethod
    def concat(parts: Sequence[Encoded]) -> Encoded:
        """Rows of several encodings (of one preprocessor) in order: how requests are batched."""
        if len(parts) == 1:
            return parts[0]
        return Encoded(*(np.concatenate([getattr(p, f) for p in parts])
                         for f in ("numeric", "numeric_observed", "binary", "categorical")))


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
            spike, share = _spike(ok, config.spike_share)
            rest = ok if spike is None else ok[ok != spike]  # what the Gaussian describes
            log = bool(ok.min() >= 0 and _skew(rest) > config.log_skew)
            t = np.log1p(rest) if log else rest
            center = float(np.mean(t))
            scale = float(np.std(t)) or 1.0
            numeric[name] = {"log": log, "center": center, "scale": scale,
                             "fill": float(np.median(t)),
                             "indicator": bool(np.isnan(x).any()), "spike": spike, "spike_share": share,
                             # for `inverse` only: the training range and precision
                             "min": float(ok.min()), "max": float(ok.max()), "decimals": _decimals(ok)}
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
        return [name for _, name in self._flag_names()]

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
        return self._assemble(
            len(df),
            {name: _numeric(df[name], name) for name in self.state["numeric"]},
            {name: _binary(df[name], name, s) for name, s in self.state["binary"].items()},
            {name: _keys(df[name]) for name in self.state["categorical"]},
        )

    def transform_columns(self, columns: Mapping[str, list], n: int) -> Encoded:
        """Encode `n` rows given column-wise as lists of JSON-like values (what a typed decoder
        gives; extra columns ignored).

        Stricter than `transform`, as befits typed input: numbers must be JSON numbers (not text,
        not booleans) and finite; ``None`` is a missing value. Raises `SchemaError` with ``row``
        (the position in the lists) and ``column`` set at the first bad value."""
        self.schema.check(columns)
        return self._assemble(
            n,
            {name: _numbers(columns[name], name) for name in self.state["numeric"]},
            {name: _flags(columns[name], name, s) for name, s in self.state["binary"].items()},
            {name: _record_keys(columns[name], name) for name in self.state["categorical"]},
        )

    def _assemble(self, n: int, numeric: dict[str, np.ndarray], binary: dict[str, np.ndarray],
                  keys: dict[str, pd.Series | list[str | None]]) -> Encoded:
        """Scale, impute and index per-column values (floats with NaN gaps; category keys with None)."""
        p = self._numeric_params()
        x = np.stack([numeric[name] for name in self.state["numeric"]], axis=1) if self.n_numeric else np.zeros((n, 0))
        gap = np.isnan(x)
        with np.errstate(invalid="ignore"):
            t = np.where(p["log"], np.log1p(np.maximum(x, 0.0)), x)
        t = np.where(gap, p["fill"], t)
        at_spike = x == p["spike"]  # NaN (no point mass, or a gap) equals nothing
        t = np.where(at_spike, p["center"], t)  # the network input: the indicator says where it is
        num = np.clip((t - p["center"]) / p["scale"], -CLIP, CLIP).astype(np.float32)
        # an imputed number is not evidence (its missing indicator is), nor is the point mass's
        # value (its indicator is)
        observed = (~(gap & p["indicator"]) & ~at_spike).astype(np.float32)
        indicators = list(gap[:, p["indicator"]].T)
        has_spike = ~np.isnan(p["spike"])
        # a gap's point-mass indicator is unknown: the training share stands in for it
        spikes = list(np.where(gap, p["spike_share"], at_spike)[:, has_spike].T)
        bins, bin_indicators = [], []
        for name, s in self.state["binary"].items():
            x = binary[name]
            gap = np.isnan(x)
            bins.append(np.where(gap, s["fill"], x))
            if s["indicator"]:
                bin_indicators.append(gap)
        cols = bins + indicators + bin_indicators + spikes
        flags = np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((n, 0), np.float32)
        cat = np.zeros((n, len(self.state["categorical"])), dtype=np.int64)
        for j, (name, s) in enumerate(self.state["categorical"].items()):
            k = keys[name]
            if isinstance(k, pd.Series):  # a frame's column: vectorised lookup
                idx = pd.Index(s["vocabulary"], dtype=object).get_indexer(k) + 2
                idx[idx == 1] = OTHER  # get_indexer's -1: a category not in the vocabulary
                idx[k.isna().to_numpy()] = MISSING
                cat[:, j] = idx
            else:
                cat[:, j] = np.fromiter(map(self._index(name).get, k, repeat(OTHER)), np.int64, count=n)
        return Encoded(num, observed, flags, cat)

    def _numeric_params(self) -> dict:
        """Per-column numeric parameters as vectors (the arithmetic runs on all columns at once)."""
        if "_numeric" not in self.__dict__:
            specs = self.state["numeric"].values()
            self._numeric = {k: np.array([s.get(k) for s in specs], dtype=bool if k in ("log", "indicator") else float)
                             for k in ("log", "center", "scale", "fill", "indicator", "spike", "spike_share")}
        return self._numeric

    def _index(self, name: str) -> dict[str, int]:
        """Category key -> model index for one column (None: missing; the vocabulary starts at 2)."""
        cache = self.__dict__.setdefault("_indices", {})
        if name not in cache:
            vocabulary = self.state["categorical"][name]["vocabulary"]
            cache[name] = {None: MISSING, **{k: i + 2 for i, k in enumerate(vocabulary)}}
        return cache[name]

    def inverse(self, numeric: np.ndarray, binary: np.ndarray, categorical: np.ndarray) -> pd.DataFrame:
        """Model-space rows (scaled numbers, 0/1 flags, category indices) back to the schema's
        columns in original units: numbers un-scaled (and un-logged) within the training range at the
        training precision, gaps where a missing indicator is 1, two-valued numbers as their two
        values, other binary columns as booleans, categories as their training keys ("other" and
        "missing" as gaps)."""
        n = len(numeric)
        flags = dict(zip(self._flag_names(), binary.T, strict=True))
        out: dict[str, pd.Series] = {}
        for j, (name, s) in enumerate(self.state["numeric"].items()):
            t = numeric[:, j].astype(np.float64) * s["scale"] + s["center"]
            x = np.expm1(np.maximum(t, 0.0)) if s["log"] else t
            x = np.clip(x, s.get("min", -np.inf), s.get("max", np.inf))
            decimals = s.get("decimals")
            if decimals is not None:
                x = np.round(x, decimals)
            if ("spike", name) in flags:
                x = np.where(flags[("spike", name)] > 0.5, s["spike"], x)
            gap = flags.get(("missing", name), np.zeros(n)) > 0.5
            col = pd.Series(np.where(gap, np.nan, x))
            out[name] = col.astype("Int64") if decimals == 0 else col
        for name, s in self.state["binary"].items():
            on = flags[("value", name)] > 0.5
            gap = flags.get(("missing", name), np.zeros(n)) > 0.5
            if s.get("low") is None:
                col = pd.Series(on, dtype="boolean")
            else:
                col = pd.Series(np.where(on, s["high"], s["low"]))
                if col.dropna().map(float.is_integer).all():
                    col = col.astype("Int64")
            col[gap] = pd.NA
            out[name] = col
        for j, name in enumerate(self.state["categorical"]):
            keys = np.array([None, None, *self.state["categorical"][name]["vocabulary"]], dtype=object)
            col = pd.Series(keys[categorical[:, j]], dtype=object)
            known = col.dropna()
            if len(known) and known.map(lambda k: k.lstrip("-").isdigit() and str(int(k)) == k).all():
                col = pd.to_numeric(col).astype("Int64")  # integer codes stay integers ("007" stays text)
            out[name] = col
        return pd.DataFrame({name: out[name] for name in self.schema.names()})

    def _flag_names(self) -> list[tuple[str, str]]:
        """What each Bernoulli feature is, in model order: ("value", column), ("missing", column) or
        ("spike", column) (a numeric column at its point mass)."""
        names = [("value", n) for n in self.state["binary"]]
        names += [("missing", n) for n, s in self.state["numeric"].items() if s["indicator"]]
        names += [("missing", n) for n, s in self.state["binary"].items() if s["indicator"]]
        names += [("spike", n) for n, s in self.state["numeric"].items() if s.get("spike") is not None]
        return names

    def to_dict(self) -> dict:
        return self.state

    @classmethod
    def from_dict(cls, schema: Schema, d: dict) -> Preprocessor:
        return cls(schema, d)


def _bad_row(s: pd.Series, bad: np.ndarray) -> tuple[str, object]:
    i = int(np.flatnonzero(bad)[0])
    return f"row {s.index[i]}: {show(s.iloc[i])}", s.index[i]


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
            where, row = _bad_row(s, bad)
            raise SchemaError(f"column {name!r} must be numeric, got {where}", row=row, column=name)
        x = coerced.to_numpy(dtype=float, na_value=np.nan)
    inf = np.isinf(x)
    if inf.any():
        where, row = _bad_row(s, inf)
        raise SchemaError(f"column {name!r} must be finite, got {where}", row=row, column=name)
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
        where, row = _bad_row(s, bad)
        raise SchemaError(f"column {name!r} must be true/false, got {where}", row=row, column=name)
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


_NUMBER_TYPES = frozenset({int, float, type(None)})
_FLAG_VALUES = {True: 1.0, False: 0.0}  # 1 and 0 hash equal to True and False, so they map too
_KEY_TYPES = (str, int, float, bool)


def _json_type(v: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(v), type(v).__name__)


def _record_error(values: list, i: int, name: str, want: str) -> SchemaError:
    v = values[i]
    shown = show(v) if isinstance(v, (str, int, float, bool)) else _json_type(v)
    return SchemaError(f"record {i}, column {name!r}: must be {want}, got {shown}", row=i, column=name)


def _numbers(values: list, name: str) -> np.ndarray:
    """Record values of a numeric column as float64 with NaN for None; anything else refused."""
    if set(map(type, values)) <= _NUMBER_TYPES:
        try:
            x = np.array(values, dtype=np.float64)  # None -> NaN
        except OverflowError:  # an integer beyond the double range
            i = next(i for i, v in enumerate(values) if type(v) is int and abs(v) > sys.float_info.max)
            raise _record_error(values, i, name, "a finite number or null") from None
        finite = np.isfinite(x)
        if finite.all():
            return x
        for i in np.flatnonzero(~finite).tolist():  # NaN is fine where it stands for None
            if values[i] is not None:
                raise _record_error(values, i, name, "a finite number or null")
        return x
    for i, v in enumerate(values):
        if type(v) not in _NUMBER_TYPES:
            raise _record_error(values, i, name, "a finite number or null")
    raise AssertionError("unreachable")  # pragma: no cover


def _flags(values: list, name: str, spec: dict) -> np.ndarray:
    """Record values of a binary column as 0/1 floats with NaN for None."""
    if spec.get("low") is not None:  # trained on a two-valued number: the same arithmetic as frames
        x = _numbers(values, name)
        low, high = spec["low"], spec["high"]
        if high == low:
            return np.where(np.isnan(x), np.nan, (x != low).astype(float))
        return np.clip((x - low) / (high - low), 0.0, 1.0)
    if set(map(type, values)) <= {bool, type(None)}:  # JSON booleans and nulls
        return np.array(values, dtype=np.float64)  # True 1, False 0, None NaN
    out = np.empty(len(values))
    for i, v in enumerate(values):
        if v is None:
            out[i] = np.nan
        elif type(v) in (bool, int) and v in _FLAG_VALUES:
            out[i] = _FLAG_VALUES[v]
        elif type(v) is str and v.strip().lower() in TRUE_STRINGS | FALSE_STRINGS:
            out[i] = float(v.strip().lower() in TRUE_STRINGS)
        else:
            raise _record_error(values, i, name, "true, false or null")
    return out


def _record_keys(values: list, name: str) -> list[str | None]:
    """Record values of a categorical column as category keys (see `_key`)."""
    if set(map(type, values)) == {str}:
        return list(map(str.strip, values))
    keys = []
    for i, v in enumerate(values):
        if v is not None and (not isinstance(v, _KEY_TYPES) or (type(v) is float and not np.isfinite(v))):
            raise _record_error(values, i, name, "a string, number, boolean or null")
        keys.append(_key(v))
    return keys


def _decimals(x: np.ndarray, most: int = 6) -> int | None:
    """The fewest decimals every value is written with (0 for whole numbers); None beyond `most`."""
    for d in range(most + 1):
        if np.all(np.abs(np.round(x, d) - x) <= 1e-9 * np.maximum(1.0, np.abs(x))):
            return d
    return None


def _spike(x: np.ndarray, share: float | None) -> tuple[float | None, float | None]:
    """The most frequent value and its share, when it holds at least `share` of `x` and other
    values exist (a column of one or two values is not modelled as a number); else (None, None)."""
    if share is None:
        return None, None
    values, counts = np.unique(x, return_counts=True)
    i = int(np.argmax(counts))
    if len(values) < 3 or counts[i] < share * len(x):
        return None, None
    return float(values[i]), float(counts[i] / len(x))


def _skew(x: np.ndarray) -> float:
    sd = x.std()
    return float(np.mean(((x - x.mean()) / sd) ** 3)) if sd > 0 else 0.0
