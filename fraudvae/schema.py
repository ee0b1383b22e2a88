"""Column roles, inferred from a training frame and checked again on every frame scored.

Roles:
- ``numeric``: quantities, modelled with a Gaussian likelihood;
- ``binary``: booleans and two-valued numbers, modelled with a Bernoulli likelihood;
- ``categorical``: strings and low-cardinality integer codes, modelled with a softmax over a
  training vocabulary (plus "other" and "missing" buckets);
- ``time``: date-times (text in one format, or epoch seconds in a column named like a time): the
  model sees their hour of day and day of week, never the raw clock.
Numbers written as text ("1,355.21", "$12.50", "(3.10)") are numbers (`fraudvae.values`); a
column of numbers with a few values that are not is refused, naming them.
Columns that carry no usable signal (row ids, clocks and counters that only move one way along
the file, constants, free text, empty columns) are left out with a reason, so the user can see and
override the choice (``categorical=`` forces a column in).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from fraudvae.errors import DataError, SchemaError
from fraudvae.values import (
    decimal_mark,
    epoch_unit,
    guess_time_format,
    looks_like_time_name,
    parse_numbers,
    parse_times,
)

# the columns `score` writes: an input column of the same name would be overwritten or confused with them
OUTPUT_COLUMNS = ("score", "flag", "p_value", "top_features")
# names fraud labels go by (compared lower-case, without "_", "-" or spaces)
LABEL_NAMES = frozenset({"isfraud", "fraud", "fraudulent", "isfraudulent", "fraudflag", "fraudlabel", "label",
                         "class", "target", "fraudfoundp", "isanomaly", "anomaly", "outlier", "y", "chargeback"})
MOSTLY = 0.9  # a text column whose non-missing values are at least this share numbers (or times) is one
MAX_CODE_LEVELS = 10  # integer columns with at most this many distinct values are treated as codes
MAX_ID_LEVELS = 100  # an integer column named like an identifier with more distinct values is one
ID_NAME = re.compile(r"(?:_[iI][dD]|ID|Id)$|^(?i:id|card|customer|account|user|terminal|merchant)$")
TRUE_STRINGS = frozenset({"1", "true", "t", "yes", "y", "fraud"})
FALSE_STRINGS = frozenset({"0", "false", "f", "no", "n", "normal", "legit"})


@dataclass(frozen=True)
class Column:
    name: str
    role: str  # numeric, binary, categorical or time


@dataclass(frozen=True)
class Schema:
    """What the model reads: used columns with their roles, and what it leaves out and why."""

    columns: tuple[Column, ...]
    dropped: dict[str, str] = field(default_factory=dict)
    label_column: str | None = None
    id_column: str | None = None

    def names(self, role: str | None = None) -> list[str]:
        return [c.name for c in self.columns if role is None or c.role == role]

    def to_dict(self) -> dict:
        return {"columns": [asdict(c) for c in self.columns], "dropped": dict(self.dropped),
                "label_column": self.label_column, "id_column": self.id_column}

    @classmethod
    def from_dict(cls, d: dict) -> Schema:
        return cls(columns=tuple(Column(**c) for c in d["columns"]), dropped=dict(d["dropped"]),
                   label_column=d["label_column"], id_column=d["id_column"])

    def check(self, data: pd.DataFrame | Iterable[str]) -> None:
        """Raise `SchemaError` naming every column the model needs that `data` (a frame, or the
        column names of any table) lacks; its ``column`` is the first of them."""
        present = set(data.columns if isinstance(data, pd.DataFrame) else data)
        missing = [n for n in self.names() if n not in present]
        if missing:
            raise SchemaError(f"missing column(s) the model needs: {', '.join(map(repr, missing))}",
                              column=missing[0])


def infer_schema(
    df: pd.DataFrame,
    label_column: str | None = None,
    id_column: str | None = None,
    drop: tuple[str, ...] = (),
    categorical: tuple[str, ...] = (),
    time_columns: tuple[str, ...] = (),
    label_check: bool = True,
    numeric: tuple[str, ...] = (),
    entities: tuple[str, ...] = (),
) -> Schema:
    """Infer column roles from a training frame (see the module docstring for the rules).

    Refuses (`DataError`, naming the column and the fix) an id or feature column named like an
    output column, a column of numbers or date-times with a few values that are neither, and, unless
    ``label_check`` is off or a label column is given, a 0/1 column named like a fraud label."""
    for option, names in (("--label-column", [label_column]), ("--id-column", [id_column]),
                          ("--drop", list(drop)), ("--categorical", list(categorical)),
                          ("--time-column", list(time_columns)), ("--numeric", list(numeric)),
                          ("--entity-column", list(entities))):
        for name in names:
            if name is not None and name not in df.columns:
                raise DataError(f"{option} {name!r} is not a column of the data "
                                f"(columns: {', '.join(map(str, df.columns[:20]))})", column=name)
    if id_column in OUTPUT_COLUMNS:
        raise DataError(f"the id column {id_column!r} has the name of a column the scores are written in "
                        f"({', '.join(OUTPUT_COLUMNS)}): rename it in the file", column=id_column)
    columns: list[Column] = []
    dropped: dict[str, str] = {}
    for name in df.columns:
        if not isinstance(name, str):
            raise DataError(f"column names must be strings, got {name!r}")
        if name in (label_column, id_column):
            continue
        if name in entities:
            dropped[name] = "entity: its history gives features, the id itself is no input"
            continue
        if name in drop:
            dropped[name] = "dropped on request"
            continue
        if name in OUTPUT_COLUMNS:
            raise DataError(f"column {name!r} has the name of a column the scores are written in "
                            f"({', '.join(OUTPUT_COLUMNS)}): rename it in the file, or leave it out with --drop {name}",
                            column=name)
        if label_check and label_column is None:
            _check_not_label(df[name], name)
        if name in numeric:
            columns.append(Column(name, "numeric"))
            continue
        role, reason = _role(df[name], name, force_categorical=name in categorical, force_time=name in time_columns)
        if role is None:
            dropped[name] = reason
        else:
            columns.append(Column(name, role))
    if not columns:
        reasons = "; ".join(f"{k}: {v}" for k, v in dropped.items()) or "no columns besides label/id"
        raise DataError(f"no usable column in the data ({reasons})")
    return Schema(tuple(columns), dropped, label_column, id_column)


def where(s: pd.Series, i: int) -> str:
    """The place of the `i`-th value of `s`: "line N" in a frame read from a file (its index holds
    the file's line numbers, see `fraudvae.io`), else "row LABEL"."""
    label = s.index[i]
    label = label.item() if isinstance(label, np.generic) else label
    return f"line {label}" if s.index.name == "line" else f"row {label}"


def first_bad(s: pd.Series, bad: np.ndarray, most: int = 3) -> str:
    """The first few bad values of `s` with their places: "'abc' (line 1236), 'x7' (line 2719)"."""
    idx = np.flatnonzero(bad)
    shown = ", ".join(f"{show(s.iloc[i])} ({where(s, i)})" for i in idx[:most])
    return shown + (f" and {len(idx) - most} more" if len(idx) > most else "")


def looks_like_label(s: pd.Series, name: str) -> bool:
    """Whether a column is named like a fraud label (is_fraud, Class, ...) and holds only 0/1 values."""
    if name.lower().replace("_", "").replace("-", "").replace(" ", "") not in LABEL_NAMES:
        return False
    values = s.dropna()
    if values.empty:
        return False
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return set(np.unique(values.to_numpy(dtype=float)).tolist()) <= {0.0, 1.0}
    return set(values.astype(str).str.strip().str.lower().unique()) <= TRUE_STRINGS | FALSE_STRINGS


def check_no_label(df: pd.DataFrame, harm: str, skip: str = "") -> None:
    """Refuse data holding a column that looks like a fraud label when no label column was given:
    `harm` says what using its frauds as normal rows would do."""
    for name in df.columns:
        if isinstance(name, str) and looks_like_label(df[name], name):
            raise DataError(f"column {name!r} looks like a fraud label (0/1 values, a label's name) but no "
                            f"--label-column was given: {harm}. Pass --label-column {name} to leave its frauds "
                            f"out{skip}", column=name)


def _check_not_label(s: pd.Series, name: str) -> None:
    if looks_like_label(s, name):
        raise DataError(f"column {name!r} looks like a fraud label (0/1 values, a label's name) but no --label-column "
                        f"was given: the model would train on the frauds, with the label as an input that scoring "
                        f"then requires. Pass --label-column {name} to keep its frauds out of training, or "
                        f"--no-label-check if it is an ordinary column", column=name)


def _role(s: pd.Series, name: str, force_categorical: bool, force_time: bool = False) -> tuple[str | None, str]:
    if force_time:
        _time_role(s, name, forced=True)
        return "time", ""
    values = s.dropna()
    if len(values) == 0:
        return None, "empty (every value missing)"
    if force_categorical:
        return "categorical", ""
    text = not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s) or is_bool_like(values))
    if text:
        x, notnum = parse_numbers(s, decimal_mark(s))
        got = int(np.isfinite(x).sum() + np.isinf(x).sum())
        if got and not notnum.any():  # numbers written as text: read as the numbers they are
            s = pd.Series(x, index=s.index)
            values = s.dropna()
            text = False
        elif got >= MOSTLY * (got + notnum.sum()):
            raise DataError(f"column {name!r} holds numbers, but {int(notnum.sum())} value(s) are not: "
                            f"{first_bad(s, notnum)}. Fix the file, leave the column out with --drop {name}, or "
                            f"model its values as categories with --categorical {name}", column=name)
        elif _time_role(s, name, forced=False):
            return "time", ""
    elif looks_like_time_name(name) and not pd.api.types.is_bool_dtype(s) \
            and epoch_unit(s.to_numpy(dtype=float, na_value=np.nan)) is not None:
        return "time", ""  # epoch seconds (or milliseconds) in a column named like a time
    if len(values) == 0:
        return None, "empty (every value missing)"
    n = len(values)
    n_unique = values.nunique()
    if n_unique == 1:
        return None, "constant"
    if n >= 20 and (values.is_monotonic_increasing or values.is_monotonic_decreasing):
        # A value that only moves one way along the file is a clock or a counter: every later
        # row lies outside what training saw, so modelling it flags the passage of time.
        if n_unique == n:
            return None, "row id (unique, monotonic along the file)"
        return None, "time or sequence column (monotonic along the file)"
    if pd.api.types.is_bool_dtype(s) or is_bool_like(values):
        return "binary", ""
    if not text:
        if n_unique == 2:
            return "binary", ""
        if pd.api.types.is_integer_dtype(s) and n_unique > MAX_ID_LEVELS and ID_NAME.search(name.strip()):
            raise DataError(f"column {name!r} looks like an identifier (an integer named like one, {n_unique:,} "
                            f"values): modelled as a number, its ids would be read as quantities. Use its history "
                            f"with --entity-column {name} (and --time-column), leave it out with --drop {name}, or "
                            f"insist on a number with --numeric {name}", column=name)
        if pd.api.types.is_integer_dtype(s) and n_unique <= MAX_CODE_LEVELS:
            return "categorical", ""
        return "numeric", ""
    as_text = values.astype(str)
    if n >= 20 and n_unique >= 0.5 * n:
        if as_text.str.len().mean() > 20 or as_text.str.contains(" ").mean() > 0.5:
            return None, "free text (mostly unique strings)"
        return None, "row id (mostly unique values)"
    return "categorical", ""


def _time_role(s: pd.Series, name: str, forced: bool) -> bool:
    """Whether a text column is date-times; raises when most values are and a few are not (or, when
    `forced`, when they are not date-times at all)."""
    if forced:
        x, notnum = parse_numbers(s)
        if not notnum.any():  # numbers, read as text or not
            if epoch_unit(x) is not None:
                return True
            raise DataError(f"--time-column {name!r}: its numbers are not epoch seconds or milliseconds of "
                            f"1973-2103 (found {np.nanmin(x):g} to {np.nanmax(x):g})", column=name)
    fmt, share = guess_time_format(s)
    if fmt is None or share < MOSTLY:
        if forced:
            raise DataError(f"--time-column {name!r}: its values are not date-times in one format "
                            f"(first value {show(s.dropna().iloc[0]) if s.notna().any() else 'none'})", column=name)
        return False
    bad = parse_times(s, fmt)[1]
    if bad.any():
        raise DataError(f"column {name!r} holds date-times ({fmt}), but {int(bad.sum())} value(s) are not: "
                        f"{first_bad(s, bad)}. Fix the file, or leave the column out with --drop {name}", column=name)
    return True


def show(value: object) -> str:
    """A value as a user wrote it (numpy scalars shown as plain Python values)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def is_bool_like(values: pd.Series) -> bool:
    """A column of Python booleans (object dtype, e.g. booleans with gaps)."""
    return values.dtype == object and values.map(lambda v: isinstance(v, (bool, np.bool_))).all()


def to_binary_label(s: pd.Series, name: str) -> np.ndarray:
    """A label column as 0/1; refuses anything that is not binary (names the bad value)."""
    if s.isna().any():
        i = int(np.flatnonzero(s.isna())[0])
        raise DataError(f"label column {name!r} has missing values ({where(s, i)})", row=s.index[i], column=name)
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=np.int64)
    if pd.api.types.is_numeric_dtype(s):
        bad = ~s.isin([0, 1])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"label column {name!r} is not binary: value {show(s.iloc[i])} ({where(s, i)}) "
                            "(allowed: 0/1, true/false, yes/no, fraud/normal)", row=s.index[i], column=name)
        return s.to_numpy(dtype=np.int64)
    text = s.astype(str).str.strip().str.lower()
    pos, neg = text.isin(TRUE_STRINGS), text.isin(FALSE_STRINGS)
    bad = ~(pos | neg)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"label column {name!r} is not binary: value {show(s.iloc[i])} ({where(s, i)}) "
                        "(allowed: 0/1, true/false, yes/no, fraud/normal)", row=s.index[i], column=name)
    return pos.to_numpy(dtype=np.int64)


def label_of(df: pd.DataFrame, name: str) -> np.ndarray:
    """`df`'s label column `name` as 0/1 (`to_binary_label`); a column the data lacks is an error naming it."""
    if name not in df.columns:
        raise DataError(f"label column {name!r} is not a column of the data", column=name)
    return to_binary_label(df[name], name)
