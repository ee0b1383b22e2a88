"""Column roles, inferred from a training frame and checked again on every frame scored.

Roles:
- ``numeric``: quantities, modelled with a Gaussian likelihood;
- ``binary``: booleans and two-valued numbers, modelled with a Bernoulli likelihood;
- ``categorical``: strings and low-cardinality integer codes, modelled with a softmax over a
  training vocabulary (plus "other" and "missing" buckets).
Columns that carry no usable signal (row ids, clocks and counters that only move one way along
the file, constants, free text, empty columns) are left out with a reason, so the user can see and
override the choice (``categorical=`` forces a column in).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from fraudvae.errors import DataError, SchemaError

ROLES = ("numeric", "binary", "categorical")
MAX_CODE_LEVELS = 10  # integer columns with at most this many distinct values are treated as codes
TRUE_STRINGS = frozenset({"1", "true", "t", "yes", "y", "fraud"})
FALSE_STRINGS = frozenset({"0", "false", "f", "no", "n", "normal", "legit"})


@dataclass(frozen=True)
class Column:
    name: str
    role: str  # one of ROLES


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
) -> Schema:
    """Infer column roles from a training frame (see the module docstring for the rules)."""
    for option, names in (("--label-column", [label_column]), ("--id-column", [id_column]),
                          ("--drop", list(drop)), ("--categorical", list(categorical))):
        for name in names:
            if name is not None and name not in df.columns:
                raise DataError(f"{option} {name!r} is not a column of the data "
                                f"(columns: {', '.join(map(str, df.columns[:20]))})")
    columns: list[Column] = []
    dropped: dict[str, str] = {}
    for name in df.columns:
        if not isinstance(name, str):
            raise DataError(f"column names must be strings, got {name!r}")
        if name in (label_column, id_column):
            continue
        if name in drop:
            dropped[name] = "dropped on request"
            continue
        role, reason = _role(df[name], force_categorical=name in categorical)
        if role is None:
            dropped[name] = reason
        else:
            columns.append(Column(name, role))
    if not columns:
        reasons = "; ".join(f"{k}: {v}" for k, v in dropped.items()) or "no columns besides label/id"
        raise DataError(f"no usable column in the data ({reasons})")
    return Schema(tuple(columns), dropped, label_column, id_column)


def _role(s: pd.Series, force_categorical: bool) -> tuple[str | None, str]:
    values = s.dropna()
    n = len(values)
    if n == 0:
        return None, "empty (every value missing)"
    n_unique = values.nunique()
    if force_categorical:
        return "categorical", ""
    if n_unique == 1:
        return None, "constant"
    if n >= 20 and (values.is_monotonic_increasing or values.is_monotonic_decreasing):
        # A value that only moves one way along the file is a clock or a counter: every later
        # row lies outside what training saw, so modelling it flags the passage of time.
        if n_unique == n:
            return None, "row id (unique, monotonic along the file)"
        return None, "time or sequence column (monotonic along the file)"
    if pd.api.types.is_bool_dtype(s) or _is_bool_like(values):
        return "binary", ""
    if pd.api.types.is_numeric_dtype(s):
        if n_unique == 2:
            return "binary", ""
        if pd.api.types.is_integer_dtype(s) and n_unique <= MAX_CODE_LEVELS:
            return "categorical", ""
        return "numeric", ""
    as_text = values.astype(str)
    if n >= 20 and n_unique >= 0.5 * n:
        if as_text.str.len().mean() > 20 or as_text.str.contains(" ").mean() > 0.5:
            return None, "free text (mostly unique strings)"
        return None, "row id (mostly unique values)"
    return "categorical", ""


def show(value: object) -> str:
    """A value as a user wrote it (numpy scalars shown as plain Python values)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _is_bool_like(values: pd.Series) -> bool:
    """A column of Python booleans (object dtype, e.g. booleans with gaps)."""
    return values.dtype == object and values.map(lambda v: isinstance(v, (bool, np.bool_))).all()


def to_binary_label(s: pd.Series, name: str) -> np.ndarray:
    """A label column as 0/1; refuses anything that is not binary (names the bad value)."""
    if s.isna().any():
        row = s.index[int(np.flatnonzero(s.isna())[0])]
        raise DataError(f"label column {name!r} has missing values (row {row})")
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=np.int64)
    if pd.api.types.is_numeric_dtype(s):
        bad = ~s.isin([0, 1])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"label column {name!r} is not binary: value {show(s.iloc[i])} in row {s.index[i]} "
                            "(allowed: 0/1, true/false, yes/no, fraud/normal)")
        return s.to_numpy(dtype=np.int64)
    text = s.astype(str).str.strip().str.lower()
    pos, neg = text.isin(TRUE_STRINGS), text.isin(FALSE_STRINGS)
    bad = ~(pos | neg)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"label column {name!r} is not binary: value {show(s.iloc[i])} in row {s.index[i]} "
                        "(allowed: 0/1, true/false, yes/no, fraud/normal)")
    return pos.to_numpy(dtype=np.int64)
