"""Turn a frame into model inputs: scaled numbers, 0/1 flags and category indices.

All state is fitted on training normals only: one spec per column (`fraudvae.specs`), plain JSON.
Missing values: numeric and binary gaps are imputed (for the network's input), plus a
missing-indicator feature when the training data had gaps in that column; categorical gaps are a
category of their own when training had them. A gap is never evidence about its value: its
likelihood term is masked out of the score (`Encoded.observed`), and only an indicator or a
"missing" category learned in training can make a gap itself count. Time columns become two
categorical features, hour of day and day of week. Numbers on a log scale use a signed log, so a
value below the training range (a refund in an amount column) scores by how far below it is. Optionally
(``point_mass_share``), a numeric column with one value holding a large share of the training rows (a
count that is mostly 0, a fee that is mostly the standard one) gets a point mass: an indicator
"at that value", and the Gaussian only for the other values (a density cannot describe an atom;
fitted as one, its variance collapses onto the atom and every other value looks extreme). Rare
training categories and categories never seen in training share one "other" bucket. Columns named
in ``atoms`` (history features whose 0 means "nothing out of the ordinary") get their point mass
whenever it holds ``ATOM_SHARE`` of the rows, whatever ``point_mass_share`` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import repeat

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraudvae import readers as read
from fraudvae.encoded import Encoded
from fraudvae.errors import DataError
from fraudvae.readers import is_number_column, time_format
from fraudvae.schema import Schema, show, where
from fraudvae.specs import BinarySpec, CategoricalSpec, NumericSpec, TimeSpec
from fraudvae.values import (
    ISO_SECONDS,
    clock_features,
    clock_keys,
    clock_keys_of_seconds,
    decimal_mark,
    iso_seconds,
    json_datetimes,
)

OTHER, MISSING = 0, 1  # reserved category indices; the training vocabulary starts at 2
ATOM_SHARE = 0.05  # a declared atom (`PreprocessConfig.atoms`) holding this share of the rows is a point mass
CLIP = 1e3  # scaled numbers are clipped here so that any finite input gives a finite score


@dataclass(frozen=True)
class PreprocessConfig:
    min_category_count: int = 5  # rarer training categories go to "other"
    max_categories: int = 100  # per column, the most frequent ones; the rest go to "other"
    log_skew: float = 2.0  # non-negative columns skewed beyond this are modelled on a log scale
    point_mass_share: float | None = None  # a numeric value held by at least this share of rows is a point mass
    atoms: tuple[str, ...] = ()  # columns whose commonest value is a point mass whenever it holds ATOM_SHARE of rows


class Preprocessor:
    """Fitted preprocessing state for one schema. Build with `fit` or `from_dict`."""

    def __init__(self, schema: Schema, numeric: dict[str, NumericSpec], binary: dict[str, BinarySpec],
                 categorical: dict[str, CategoricalSpec], times: dict[str, TimeSpec]) -> None:
        self.schema = schema
        self.numeric, self.binary, self.categorical, self.times = numeric, binary, categorical, times

    # ---- fitting
    @classmethod
    def fit(cls, df: pd.DataFrame, schema: Schema, config: PreprocessConfig = PreprocessConfig()) -> Preprocessor:
        numeric, binary, categorical, times = {}, {}, {}, {}
        for name in schema.names("numeric"):
            decimal = decimal_mark(df[name])
            x = read.numbers(df[name], name, decimal)
            ok = x[np.isfinite(x)]
            if ok.size == 0:  # the schema saw values, but not among the training normals
                ok = np.zeros(1)
            declared = name in config.atoms
            atom, share = _point_mass(ok, ATOM_SHARE if declared else config.point_mass_share, declared)
            rest = ok if atom is None or (ok == atom).all() else ok[ok != atom]  # what the Gaussian describes
            with np.errstate(over="ignore", invalid="ignore"):
                log = bool(ok.min() >= 0 and _skew(rest) > config.log_skew)
                t = np.log1p(rest) if log else rest
                spec = NumericSpec(log, float(np.mean(t)), float(np.std(t)) or 1.0, float(np.median(t)),
                                   bool(np.isnan(x).any()), atom, share, decimal,
                                   float(ok.min()), float(ok.max()), _decimals(ok), atom is not None)
            _check_scalable(df[name], name, x, spec)
            numeric[name] = spec
        for name in schema.names("binary"):
            s = df[name]
            two = BinarySpec(0.0, False)
            if is_number_column(s):
                decimal = decimal_mark(s)
                vals = np.unique(read.numbers(s, name, decimal))
                vals = vals[~np.isnan(vals)]
                two = BinarySpec(0.0, False, float(vals[0]), float(vals[-1]), decimal)
            x = read.flags(s, name, two)
            ok = x[~np.isnan(x)]
            binary[name] = replace(two, fill=float(np.round(ok.mean())) if ok.size else 0.0,
                                   indicator=bool(np.isnan(x).any()))
        for name in schema.names("categorical"):
            keys = pd.Series(read.keys(df[name], name))  # a frame's column gives a Series already
            categorical[name] = CategoricalSpec(_vocabulary(keys, config), bool(keys.isna().any()))
        for name in schema.names("time"):
            unit, fmt = time_format(df[name])
            hour, day = clock_features(read.times(df[name], name, TimeSpec(unit, fmt, (), (), False)))
            times[name] = TimeSpec(unit, fmt, _vocabulary(hour, config), _vocabulary(day, config),
                                   bool(hour.isna().any()))
        return cls(schema, numeric, binary, categorical, times)

    # ---- layout
    @property
    def n_numeric(self) -> int:
        return len(self.numeric)

    def flag_layout(self) -> list[tuple[str, str]]:
        """What each 0/1 feature is, in model order, defined here only: ("value", column) for binary
        columns, ("missing", column) for missing indicators (numeric columns', then binary ones'),
        ("point_mass", column) for a numeric column at its point mass."""
        names = [("value", n) for n in self.binary]
        names += [("missing", n) for n, s in self.numeric.items() if s.indicator]
        names += [("missing", n) for n, s in self.binary.items() if s.indicator]
        names += [("point_mass", n) for n, s in self.numeric.items() if s.point_mass is not None]
        return names

    @property
    def binary_owners(self) -> list[str]:
        """The column each Bernoulli feature belongs to, in model order."""
        return [name for _, name in self.flag_layout()]

    @property
    def cardinalities(self) -> list[int]:
        return [len(vocabulary) + 2 for _, _, vocabulary, _ in self.category_features()]

    def feature_owners(self) -> list[str]:
        """Column name of every likelihood term, in model order: numeric, Bernoulli, categorical."""
        return list(self.numeric) + self.binary_owners + [f[0] for f in self.category_features()]

    def column_assignment(self) -> np.ndarray:
        """(n_terms, n_columns) 0/1: which of the schema's columns each likelihood term belongs to."""
        if "_assignment" not in self.__dict__:
            pos = {c: i for i, c in enumerate(self.schema.names())}
            owners = self.feature_owners()
            self._assignment = np.zeros((len(owners), len(pos)))
            for j, owner in enumerate(owners):
                self._assignment[j, pos[owner]] = 1.0
        return self._assignment

    def category_features(self) -> list[tuple[str, str | None, tuple[str, ...], bool]]:
        """Every softmax feature in model order: (column, part, vocabulary, a gap is a learned
        category). Categorical columns (part None), then each time column's hour and weekday."""
        out: list[tuple[str, str | None, tuple[str, ...], bool]] = [
            (name, None, s.vocabulary, s.missing) for name, s in self.categorical.items()]
        for name, t in self.times.items():
            out += [(name, "hour", t.hour, t.missing), (name, "weekday", t.weekday, t.missing)]
        return out

    # ---- transforming
    def transform(self, df: pd.DataFrame) -> Encoded:
        """Encode `df` (extra columns ignored). Raises `SchemaError` naming a missing column or
        a value of the wrong type with its row (or file line)."""
        self.schema.check(df)
        return self._encode(df, len(df), typed=False)

    def transform_columns(self, columns: Mapping[str, list], n: int) -> Encoded:
        """Encode `n` rows given column-wise as lists of JSON-like values (what a typed decoder
        gives; extra columns ignored).

        Stricter than `transform`, as befits typed input: numbers must be JSON numbers (not text,
        not booleans) and finite; ``None`` is a missing value; a time column takes the formats its
        file had (text, or epoch numbers). Raises `SchemaError` with ``row`` (the position in the
        lists) and ``column`` set at the first bad value."""
        self.schema.check(columns)
        return self._encode(columns, n, typed=True)

    def _encode(self, data: pd.DataFrame | Mapping[str, list], n: int, typed: bool) -> Encoded:
        keys: dict = {name: (None if typed else arrow_keys(data[name])) for name in self.categorical}
        keys = {name: read.keys(data[name], name, typed=typed) if k is None else k for name, k in keys.items()}
        for name, t in self.times.items():
            strings = typed and t.unit is None  # a request's time strings: read here, not by pandas, when they can be
            at_once = iso_seconds(data[name]) if strings and t.format == ISO_SECONDS else None
            fast = json_datetimes(data[name], t.format) if strings and at_once is None else None
            keys[f"{name}.hour"], keys[f"{name}.weekday"] = (
                clock_keys_of_seconds(at_once) if at_once is not None else clock_keys(fast) if fast is not None
                else clock_features(read.times(data[name], name, t, typed=typed)))
        return self._assemble(
            n,
            {name: read.numbers(data[name], name, s.decimal, typed=typed) for name, s in self.numeric.items()},
            {name: read.flags(data[name], name, s, typed=typed) for name, s in self.binary.items()},
            keys,
        )

    def _assemble(self, n: int, numeric: dict[str, np.ndarray], binary: dict[str, np.ndarray],
                  keys: dict[str, pd.Series | list[str | None]]) -> Encoded:
        """Scale, impute and index per-column values (floats with NaN gaps; category keys with None)."""
        p = self._numeric_params()
        x = np.stack([numeric[name] for name in self.numeric], axis=1) if self.n_numeric else np.zeros((n, 0))
        gap = np.isnan(x)
        with np.errstate(invalid="ignore"):
            # a signed log: the same as log1p for the values training saw, and a value below them
            # (a refund) lies as far below as its size says
            t = np.where(p["log"], np.sign(x) * np.log1p(np.abs(x)), x)
        t = np.where(gap, p["fill"], t)
        at_atom = x == p["point_mass"]  # NaN (no point mass, or a gap) equals nothing
        t = np.where(at_atom, p["center"], t)  # the network input: the indicator says where it is
        with np.errstate(over="ignore", invalid="ignore"):
            num = np.clip((t - p["center"]) / p["scale"], -CLIP, CLIP).astype(np.float32)
        # an imputed number is not evidence (a missing indicator is), nor is the point mass's value
        # (its indicator is); a gap's point-mass indicator is unknown: the training share stands in (its
        # term masked below, in models fitted since `NumericSpec.gap_says_nothing`)
        observed = [~gap & ~at_atom]
        # the 0/1 features (`flag_layout`) picked from every column's at once: numeric gaps, point-mass
        # indicators (a gap's unknown: the training share stands in), binary gaps, binary values (a
        # gap's: the fill)
        b = np.stack([binary[name] for name in self.binary], axis=1) if self.binary else np.zeros((n, 0))
        b_gap = np.isnan(b)
        pick, says, gap_at = self._flag_plan()
        pool = np.concatenate([gap, np.where(gap, p["point_mass_share"], at_atom), b_gap,
                               np.where(b_gap, p["binary_fill"], b)], axis=1)
        flag_matrix = pool[:, pick].astype(np.float32)
        # a binary column's own term is not evidence where its value was a gap, nor (in models that
        # say so) a point mass's indicator where the number was a gap
        observed.append(np.where(says, pool[:, gap_at] == 0, True))
        features = self.category_features()
        cat = np.zeros((n, len(features)), dtype=np.int64)
        cat_observed = np.ones((n, len(features)), bool)
        for j, (name, part, vocabulary, learned_gap) in enumerate(features):
            k = keys[name if part is None else f"{name}.{part}"]
            if isinstance(k, pa.DictionaryArray):  # an Arrow string column: one lookup per distinct value
                index = self._index(name, part, vocabulary)
                distinct = read.keys(pd.Series(k.dictionary.to_pylist(), dtype=object), name)  # the one key rule
                lookup = np.array([index.get(v, OTHER) for v in distinct] + [MISSING], np.int64)
                cat[:, j] = lookup[np.asarray(k.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False))]
            elif isinstance(k, pd.Series):  # a frame's column: vectorised lookup
                idx = pd.Index(vocabulary, dtype=object).get_indexer(k) + 2
                idx[idx == 1] = OTHER  # get_indexer's -1: a category not in the vocabulary
                idx[k.isna().to_numpy()] = MISSING
                cat[:, j] = idx
            else:
                index = self._index(name, part, vocabulary)
                cat[:, j] = np.fromiter(map(index.get, k, repeat(OTHER)), np.int64, count=n)
            if not learned_gap:  # training had no gaps here: a gap says nothing
                cat_observed[:, j] = cat[:, j] != MISSING
        observed.append(cat_observed)
        return Encoded(num, np.concatenate(observed, axis=1).astype(np.float32), flag_matrix, cat)

    def _numeric_params(self) -> dict:
        """Per-column numeric parameters as vectors (the arithmetic runs on all columns at once)."""
        if "_vectors" not in self.__dict__:
            specs = self.numeric.values()
            self._vectors = {k: np.array([getattr(s, k) for s in specs], dtype=bool if k == "log" else float)
                             for k in ("log", "center", "scale", "fill", "point_mass", "point_mass_share")}
            self._vectors["binary_fill"] = np.array([s.fill for s in self.binary.values()], dtype=float)
        return self._vectors

    def _flag_plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Once: where each 0/1 feature of `flag_layout` lies among `_assemble`'s columns of numeric gaps,
        point-mass indicators, binary gaps and binary values; whether a gap masks its term (a binary
        value's, and a point mass's in models with `NumericSpec.gap_says_nothing`); and that gap's column."""
        if "_flags" not in self.__dict__:
            k, numeric, binary = len(self.numeric), list(self.numeric), list(self.binary)
            place = {**{("missing", c): j for j, c in enumerate(numeric)},
                     **{("point_mass", c): k + j for j, c in enumerate(numeric)},
                     **{("missing", c): 2 * k + j for j, c in enumerate(binary)},
                     **{("value", c): 2 * k + len(binary) + j for j, c in enumerate(binary)}}
            layout = self.flag_layout()
            says = [kind == "value" or (kind == "point_mass" and self.numeric[c].gap_says_nothing)
                    for kind, c in layout]
            self._flags = (np.array([place[f] for f in layout], dtype=np.int64), np.array(says, dtype=bool),
                           np.array([place[("missing", c)] for _, c in layout], dtype=np.int64))
        return self._flags

    def _index(self, name: str, part: str | None, vocabulary: tuple[str, ...]) -> dict[str | None, int]:
        """Category key -> model index for one feature (None: missing; the vocabulary starts at 2)."""
        cache: dict[tuple[str, str | None], dict[str | None, int]] = self.__dict__.setdefault("_indices", {})
        if (name, part) not in cache:
            cache[(name, part)] = {None: MISSING, **{k: i + 2 for i, k in enumerate(vocabulary)}}
        return cache[(name, part)]

    def to_dict(self) -> dict:
        """The JSON layout of ``model.json``'s ``preprocessing`` (as every version wrote it)."""
        d = {role: {name: spec.to_dict() for name, spec in specs.items()} for role, specs in
             (("numeric", self.numeric), ("binary", self.binary), ("categorical", self.categorical))}
        if self.times:  # models without time columns keep the layout earlier versions wrote
            d["time"] = {name: spec.to_dict() for name, spec in self.times.items()}
        return d

    @classmethod
    def from_dict(cls, schema: Schema, d: dict) -> Preprocessor:
        return cls(schema, {k: NumericSpec.from_dict(v) for k, v in d["numeric"].items()},
                   {k: BinarySpec.from_dict(v) for k, v in d["binary"].items()},
                   {k: CategoricalSpec.from_dict(v) for k, v in d["categorical"].items()},
                   {k: TimeSpec.from_dict(v) for k, v in d.get("time", {}).items()})


def _check_scalable(s: pd.Series, name: str, x: np.ndarray, spec: NumericSpec) -> None:
    """Refuse a numeric column whose fitted state is not finite (values near the double's limit, say
    1e300, overflow its variance), naming the most extreme value: the model could neither train on
    it nor be saved."""
    if all(np.isfinite(v) for v in (spec.center, spec.scale, spec.fill, spec.min, spec.max) if v is not None):
        return
    i = int(np.nanargmax(np.abs(x)))
    raise DataError(f"column {name!r} holds values too large to scale, such as {show(s.iloc[i])} ({where(s, i)}): "
                    f"fix the file (a placeholder for a missing value?), or leave the column out with --drop {name}",
                    row=s.index[i], column=name)


def _vocabulary(keys: pd.Series, config: PreprocessConfig) -> tuple[str, ...]:
    counts = keys.value_counts(dropna=True)
    return tuple(str(k) for k in counts[counts >= config.min_category_count].index[: config.max_categories])


def _decimals(x: np.ndarray, most: int = 6) -> int | None:
    """The fewest decimals every value is written with (0 for whole numbers); None beyond `most`."""
    for d in range(most + 1):
        if np.all(np.abs(np.round(x, d) - x) <= 1e-9 * np.maximum(1.0, np.abs(x))):
            return d
    return None


def _point_mass(x: np.ndarray, share: float | None, declared: bool = False) -> tuple[float | None, float | None]:
    """The most frequent value and its share, when it holds at least `share` of `x` and other
    values exist (a column of one or two values is not modelled as a number), or it is `declared`
    (a history feature's "nothing out of the ordinary", which may be all there was); else (None, None)."""
    if share is None:
        return None, None
    values, counts = np.unique(x, return_counts=True)
    i = int(np.argmax(counts))
    if (len(values) < 3 and not declared) or counts[i] < share * len(x):
        return None, None
    return float(values[i]), float(counts[i] / len(x))


def _skew(x: np.ndarray) -> float:
    sd = x.std()
    return float(np.mean(((x - x.mean()) / sd) ** 3)) if sd > 0 else 0.0


def arrow_keys(s: pd.Series | list) -> pa.DictionaryArray | None:
    """A frame's Arrow-backed string column, dictionary-encoded (nulls for gaps): its distinct values
    become keys (trimmed as `readers.keys` trims them) once each, not once per row; None for any
    other column."""
    if not isinstance(s, pd.Series) or not isinstance(s.dtype, pd.StringDtype) or s.dtype.storage != "pyarrow":
        return None
    values = pa.array(s.array)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pc.dictionary_encode(values)
