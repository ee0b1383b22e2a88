"""Reading one column's values for its role, the same way at fit and at score: one function per
role (`numbers`, `flags`, `keys`, `times`), for a frame's column (values as a file gives them:
numbers written as text, missing markers, date-times) or, with ``typed=True``, for a list of JSON
values (a typed request, under stricter rules: a number must be a JSON number, a flag a boolean
or a true/false word). Both give the same values for the same data; every refusal names the column
and the row, file line or record."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from fraudvae.errors import SchemaError
from fraudvae.schema import FALSE_STRINGS, TRUE_STRINGS, first_bad, is_bool_like, show, where
from fraudvae.specs import BinarySpec, TimeSpec
from fraudvae.values import MISSING_MARKERS, epoch_unit, guess_time_format, parse_numbers, parse_times


def is_number_column(s: pd.Series) -> bool:
    """Numbers (read as such, or written as text), not booleans or true/false words."""
    if pd.api.types.is_bool_dtype(s):
        return False
    if pd.api.types.is_numeric_dtype(s):
        return True
    if is_bool_like(s.dropna()):
        return False
    x, bad = parse_numbers(s)
    return not bad.any() and bool(np.isfinite(x).any())


def time_format(s: pd.Series) -> tuple[str | None, str | None]:
    """How a time column is written: (epoch unit "s" or "ms", None) or (None, text format)."""
    if is_number_column(s):
        return epoch_unit(parse_numbers(s)[0]) or "s", None
    return None, guess_time_format(s)[0]


def time_column(s: pd.Series, name: str) -> pd.Series:
    """A file's time column as date-times, read as `fit` and `score` read one: epoch seconds or
    milliseconds (numbers), or text in the format most values follow (ISO 8601 value by value
    otherwise); the wall clock as written (an offset is not converted away, so mixed offsets are
    fine). The one reader of a time column for `evaluate`'s days and `monitor`'s windows. A value
    that is no date-time, or a gap, is a `SchemaError` naming the column and the line."""
    unit, fmt = time_format(s)
    if unit is not None and epoch_unit(parse_numbers(s)[0]) is None:
        x = parse_numbers(s)[0]
        raise SchemaError(f"time column {name!r} holds numbers that are not epoch seconds or milliseconds of "
                          f"1973-2103 (found {np.nanmin(x):g} to {np.nanmax(x):g})", column=name)
    t = _file_times(s, name, TimeSpec(unit, fmt, (), (), False))
    gap = t.isna().to_numpy()
    if gap.any():
        i = int(np.flatnonzero(gap)[0])
        raise SchemaError(f"time column {name!r} has no time at {where(s, i)} ({int(gap.sum())} gap(s) in all): "
                          f"every row needs one to be placed in a day or window", row=s.index[i], column=name)
    return t


def _file_numbers(s: pd.Series, name: str, decimal: str = ".") -> np.ndarray:
    """A column as float64 with NaN for gaps, numbers written as text read as numbers (see
    `fraudvae.values`); text that is no number, or infinities, are refused naming the row or line."""
    x, bad = parse_numbers(s, decimal)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SchemaError(f"column {name!r} must be numeric, got {first_bad(s, bad)}", row=s.index[i], column=name)
    inf = np.isinf(x)
    if inf.any():
        i = int(np.flatnonzero(inf)[0])
        raise SchemaError(f"column {name!r} must be finite, got {first_bad(s, inf)}", row=s.index[i], column=name)
    return x


def to_level(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Two-valued numbers as 0 (low) to 1 (high), a value between or beyond the levels as its
    position, clipped; NaN only for gaps. Halved first, so levels near the double's limit (±1e308)
    do not overflow their difference."""
    if high == low:  # one level among the training normals: any other value is the other level
        return np.where(np.isnan(x), np.nan, (x != low).astype(float))
    return np.clip((x / 2 - low / 2) / (high / 2 - low / 2), 0.0, 1.0)


def _file_flags(s: pd.Series, name: str, spec: BinarySpec) -> np.ndarray:
    """A binary column as 0/1 floats with NaN for gaps."""
    if spec.low is not None and spec.high is not None:
        return to_level(_file_numbers(s, name, spec.decimal), spec.low, spec.high)
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float, na_value=np.nan)
    text = s.map(lambda v: None if _isna(v) else str(v).strip().lower())
    pos, neg = text.isin(TRUE_STRINGS).to_numpy(), text.isin(FALSE_STRINGS).to_numpy()
    gap = text.isna().to_numpy() | text.isin(MISSING_MARKERS).to_numpy() & ~pos & ~neg
    bad = ~(pos | neg | gap)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SchemaError(f"column {name!r} must be true/false, got {first_bad(s, bad)}", row=s.index[i], column=name)
    return np.where(gap, np.nan, pos.astype(float))


def _file_times(s: pd.Series, name: str, spec: TimeSpec) -> pd.Series:
    t, bad = parse_times(s, spec.format, spec.unit)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        want = f"epoch {'seconds' if spec.unit == 's' else 'milliseconds'}" if spec.unit else \
            f"a date-time like its training values ({spec.format or 'ISO 8601'})"
        raise SchemaError(f"column {name!r} must be {want}, got {first_bad(s, bad)}", row=s.index[i], column=name)
    return t


def _json_times(values: list, name: str, spec: TimeSpec) -> pd.Series:
    """Record values of a time column: strings (or numbers, for an epoch column) and None."""
    for i, v in enumerate(values):
        ok = v is None or (type(v) is str) or (spec.unit is not None and type(v) in (int, float))
        if not ok:
            raise _record_error(values, i, name, "a date-time string or null" if spec.unit is None
                                else "an epoch time (a number or numeric string) or null")
    s = pd.Series(values, dtype=object)
    t, bad = parse_times(s, spec.format, spec.unit)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        want = "a date-time like the training file's" if spec.unit is None else \
            f"epoch {'seconds' if spec.unit == 's' else 'milliseconds'} of 1973-2103"
        raise _record_error(values, i, name, want)
    return t


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


def _file_keys(s: pd.Series) -> pd.Series:
    """Category keys (strings, None for gaps) that agree however the column was parsed: 1, 1.0 and
    "1" are one category. Vectorised for the common column types, value by value otherwise."""
    if pd.api.types.is_bool_dtype(s):
        return s.map({True: "True", False: "False"}).astype(object)
    if pd.api.types.is_numeric_dtype(s):
        x = s.to_numpy(dtype=float, na_value=np.nan)
        integral = np.isfinite(x) & (np.mod(x, 1) == 0) & (np.abs(x) < 2**53)
        out = np.where(integral, np.where(integral, x, 0).astype(np.int64).astype(str), x.astype(str))
        return pd.Series(np.where(np.isnan(x), None, out), index=s.index, dtype=object)  # type: ignore[call-overload]
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


def _json_numbers(values: list, name: str) -> np.ndarray:
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


def _json_flags(values: list, name: str, spec: BinarySpec) -> np.ndarray:
    """Record values of a binary column as 0/1 floats with NaN for None."""
    if spec.low is not None and spec.high is not None:  # a two-valued number: the same arithmetic as frames
        return to_level(_json_numbers(values, name), spec.low, spec.high)
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


def _json_keys(values: list, name: str) -> list[str | None]:
    """Record values of a categorical column as category keys (see `_key`)."""
    types = set(map(type, values))
    if types == {str}:
        return list(map(str.strip, values))
    if types <= {int, type(None)}:  # integer ids (not booleans: their type is bool): their digits
        return [None if v is None else str(v) for v in values]
    keys = []
    for i, v in enumerate(values):
        if v is not None and (not isinstance(v, _KEY_TYPES) or (type(v) is float and not np.isfinite(v))):
            raise _record_error(values, i, name, "a string, number, boolean or null")
        keys.append(_key(v))
    return keys


def numbers(values: pd.Series | list, name: str, decimal: str = ".", *, typed: bool = False) -> np.ndarray:
    """A numeric column as float64 with NaN for gaps; text that is no number and infinities are
    refused (typed: anything but a finite JSON number or null)."""
    return _json_numbers(values, name) if typed else _file_numbers(values, name, decimal)


def flags(values: pd.Series | list, name: str, spec: BinarySpec, *, typed: bool = False) -> np.ndarray:
    """A binary column as 0/1 floats with NaN for gaps (two-valued numbers as their position
    between the two training values)."""
    return _json_flags(values, name, spec) if typed else _file_flags(values, name, spec)


def keys(values: pd.Series | list, name: str, *, typed: bool = False) -> pd.Series | list[str | None]:
    """A categorical column as category keys (None for gaps) on which 1, 1.0 and "1" agree."""
    return _json_keys(values, name) if typed else _file_keys(values)


def times(values: pd.Series | list, name: str, spec: TimeSpec, *, typed: bool = False) -> pd.Series:
    """A time column as date-times (NaT for gaps), in the format or epoch unit of its training file."""
    return _json_times(values, name, spec) if typed else _file_times(values, name, spec)


def epoch_seconds(t: pd.Series) -> np.ndarray:
    """Date-times (`times`) as seconds since the epoch, NaN for a gap."""
    out = t.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
    out[t.isna().to_numpy()] = np.nan
    return out
