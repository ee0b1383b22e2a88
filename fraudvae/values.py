"""Reading values as real files write them: numbers as text, missing-value markers, date-times.

Exports write numbers with thousands separators ("1,355.21"), currency signs ("$12.50"), a leading
"+", parentheses or a trailing minus for negatives ("(12.50)", "12.50-"), and gaps as "NA", "-" or
"?". `parse_numbers` reads all of them, the same way at fit and at score, and says which values it
could not read. Date-times are read with the format guessed at fit (`guess_time_format`), or as
epoch seconds or milliseconds; the model sees their hour of day and day of week, in the time zone
as written (an offset such as "+02:00" is not converted away).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "?", "#n/a"})
CURRENCY = "$€£¥₹"
# a number's body once signs and currency are off: plain, or with thousands separators in groups of 3
_PLAIN = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_GROUPED = {".": re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d*)?"), ",": re.compile(r"\d{1,3}(?:\.\d{3})+(?:,\d*)?")}
_CODES = re.compile(r"^(?:USD|EUR|GBP|CAD|AUD|CHF|JPY|INR)\s*|\s*(?:USD|EUR|GBP|CAD|AUD|CHF|JPY|INR)$")
TIME_NAME = re.compile(r"(?:^|[^a-z])(?:time|timestamp|ts|date|datetime|dt)(?:$|[^a-z])|_at$|[a-z](?:Time|Date)")
EPOCH_SECONDS = (1e8, 4.2e9)  # 1973 to 2103
EPOCH_MILLISECONDS = (1e11, 4.2e12)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def parse_number(text: str, decimal: str = ".") -> float | None:
    """One written number as a float, NaN for a missing marker, None when it is not a number.

    ``decimal`` is the column's decimal mark: "." (thousands ","), or "," (thousands ".")."""
    s = text.strip()
    if s.lower() in MISSING_MARKERS:
        return float("nan")
    negative = False
    if len(s) > 2 and s[0] == "(" and s[-1] == ")":
        negative, s = True, s[1:-1].strip()
    elif len(s) > 1 and s[-1] == "-":
        negative, s = True, s[:-1].strip()
    for _ in range(2):  # "-$12", "$-12", "+12 €", "USD 12"
        s = _CODES.sub("", s).strip(CURRENCY + " ")
        if s[:1] in "+-" and s:
            if s[0] == "-":
                if negative:
                    return None
                negative = True
            s = s[1:].strip()
    if decimal == "." and "," in s:
        if not _GROUPED["."].fullmatch(s):
            return None
        s = s.replace(",", "")
    elif decimal == "," and ("," in s or "." in s):
        if _GROUPED[","].fullmatch(s) or re.fullmatch(r"\d+,\d*", s):
            s = s.replace(".", "").replace(",", ".")
        else:
            return None
    if not _PLAIN.fullmatch(s):
        return None
    v = float(s)
    return -v if negative else v


def parse_numbers(s: pd.Series, decimal: str = ".") -> tuple[np.ndarray, np.ndarray]:
    """A column of written numbers as float64 (NaN for gaps and missing markers) and a bool mask of
    the values that are not numbers. Numeric columns pass through; each distinct text is parsed once."""
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float, na_value=np.nan), np.zeros(len(s), bool)
    if pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=float, na_value=np.nan), np.zeros(len(s), bool)
    present = s.notna().to_numpy()
    x = np.full(len(s), np.nan)
    bad = np.zeros(len(s), bool)
    if not present.any():
        return x, bad
    codes, uniques = pd.factorize(s[present])
    parsed = [_one(v, decimal) for v in uniques]  # a float (NaN for a gap), or None: not a number
    idx = np.flatnonzero(present)
    x[idx] = np.array([np.nan if v is None else v for v in parsed], dtype=float)[codes]
    bad[idx] = np.array([v is None for v in parsed], dtype=bool)[codes]
    return x, bad


def _is_gap(v: object) -> bool:
    return isinstance(v, str) and v.strip().lower() in MISSING_MARKERS


def _one(v: object, decimal: str) -> float | None:
    """A value as a float (NaN for a missing marker), None when it is not a number."""
    if isinstance(v, bool | np.bool_ | int | float | np.integer | np.floating):
        return float(v)
    return parse_number(str(v), decimal)


def decimal_mark(s: pd.Series) -> str:
    """"," when a text column writes its decimals with a comma ("12,50", "1.234,56") and never in a
    way that only "." reads; else "." (the default, also for columns with no separator at all)."""
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return "."
    sample = pd.Series(s.dropna().unique()[:5000]).astype(str).str.strip()
    comma = sample.str.fullmatch(r"[-+(]?[$€£¥]?\s*(?:\d{1,3}(?:\.\d{3})+|\d+),\d+\s*[€$]?\)?-?").sum()
    dot_only = sample.str.fullmatch(r"[-+(]?[$€£¥]?\s*(?:\d{1,3}(?:,\d{3})+|\d+)\.\d+\s*[€$]?\)?-?").sum()
    # "1,355" fits both: a comma followed by exactly 3 digits is read as thousands unless others prove otherwise
    proof = sample.str.contains(r",\d{1,2}(?:\D|$)|,\d{4,}").sum()
    return "," if comma and proof and not dot_only else "."


# ----------------------------------------------------------------------------------------- time
def looks_like_time_name(name: str) -> bool:
    return TIME_NAME.search(name) is not None or TIME_NAME.search(name.lower()) is not None


def epoch_unit(x: np.ndarray) -> str | None:
    """"s" or "ms" when every finite value lies where epoch seconds (or milliseconds) of 1973-2103 do."""
    ok = x[np.isfinite(x)]
    if ok.size == 0:
        return None
    for unit, (lo, hi) in (("s", EPOCH_SECONDS), ("ms", EPOCH_MILLISECONDS)):
        if ok.min() >= lo and ok.max() <= hi:
            return unit
    return None


def guess_time_format(s: pd.Series) -> tuple[str | None, float]:
    """The strftime format most of a text column's values follow, and the share of non-missing values
    it reads (0 when the column is not date-times). Tries month-first and day-first readings."""
    values = pd.Series(s.dropna().astype(str).str.strip())
    values = values[~values.str.lower().isin(MISSING_MARKERS)]
    if values.empty:
        return None, 0.0
    # a date-time has digits and separators: pure numbers, words and codes are not
    head = values.iloc[:200]
    if not head.str.contains(r"\d[-/.]\d|\d:\d|\d{4}-\d").mean() >= 0.5:
        return None, 0.0
    from pandas.tseries.api import guess_datetime_format

    best: tuple[str | None, float] = (None, 0.0)
    probe = values.iloc[:2000]
    for first in dict.fromkeys(head.iloc[:5]):
        for dayfirst in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fmt = guess_datetime_format(first, dayfirst=dayfirst)
            if fmt is None or fmt == best[0]:
                continue
            share = float(parse_times(probe, fmt)[1].__invert__().mean())
            if share > best[1]:
                best = (fmt, share)
    return best


def parse_times(s: pd.Series, fmt: str | None, unit: str | None = None) -> tuple[pd.Series, np.ndarray]:
    """Date-times as naive wall-clock timestamps (NaT for gaps) and a bool mask of the values that
    could not be read. Text is read with `fmt`, then value by value as ISO 8601; numbers (and numeric
    text) as epoch `unit` ("s" or "ms") when it is given."""
    n = len(s)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    bad = np.zeros(n, bool)
    if n == 0:
        return out, bad
    if pd.api.types.is_datetime64_any_dtype(s):  # date-times already (Parquet): the wall clock as written
        t = s.dt.tz_localize(None) if getattr(s.dtype, "tz", None) is not None else s
        return t.astype("datetime64[ns]"), bad
    if unit is not None:
        x, notnum = parse_numbers(s)
        ok = np.isfinite(x)
        with np.errstate(invalid="ignore"):
            ns = np.where(ok, x, 0) * (1e9 if unit == "s" else 1e6)
        inside = ok & (np.abs(ns) < 9.2e18)
        out[inside] = pd.to_datetime(ns[inside].astype(np.int64), unit="ns")
        return out, notnum | (ok & ~inside) | (~ok & ~np.isnan(x))
    text = s.astype(object).where(s.notna(), None)
    present = np.array([v is not None and not (isinstance(v, str) and _is_gap(v)) for v in text], bool)
    if not present.any():
        return out, bad
    strings = pd.Series([str(v).strip() for v in text[present]], index=s.index[present])
    try:
        parsed = pd.to_datetime(strings, format=fmt, errors="coerce") if fmt else None
    except ValueError:  # offsets that differ from row to row: read value by value below
        parsed = None
    if parsed is None:
        parsed = pd.Series(pd.NaT, index=strings.index)
    if getattr(parsed.dtype, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)  # the wall clock as written
    parsed = pd.Series(parsed, index=strings.index).astype("datetime64[ns]")
    failed = parsed.isna().to_numpy()
    if failed.any():
        retry = [_iso(v) for v in strings[failed]]
        parsed.iloc[np.flatnonzero(failed)] = pd.Series(retry, dtype="datetime64[ns]").to_numpy()
    out[present] = parsed.to_numpy()
    bad[present] = parsed.isna().to_numpy()
    return out, bad


def _iso(text: str) -> pd.Timestamp | None:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return None
    return pd.Timestamp(t.replace(tzinfo=None))


FAST_ROWS = 1000  # a request's times are read value by value (pandas' setup costs more on a few rows)
ISO_SECONDS = "%Y-%m-%d %H:%M:%S"


def json_datetimes(values: Sequence, fmt: str | None) -> list[datetime | None] | None:
    """A request's time strings (JSON values) in the training file's format `fmt`, value by value,
    as `parse_times` reads them (the wall clock as written, microseconds exact; None a gap): on a
    few rows pandas' setup costs milliseconds. None when a value is neither such a string nor None
    (the general reader then reads or names it), or when there are more than `FAST_ROWS`."""
    if fmt is None or len(values) > FAST_ROWS:
        return None
    out: list[datetime | None] = []
    iso = fmt == ISO_SECONDS
    for v in values:
        if v is None:
            out.append(None)
            continue
        if type(v) is not str:
            return None
        v = v.strip()
        try:  # the common layout through the C parser (strptime's regex costs ten times more)
            if iso and len(v) == 19 and v[4] == v[7] == "-" and v[10] == " " and v[13] == v[16] == ":" and v.isascii():
                when = datetime.fromisoformat(v)
            else:
                when = datetime.strptime(v, fmt)
        except ValueError:
            return None
        out.append(when.replace(tzinfo=None))
    return out


VECTOR_ROWS = 32  # from this many values, `iso_seconds` reads them at once (below, value by value costs less)
_DIGITS = np.array([i for i in range(19) if i not in (4, 7, 10, 13, 16)])
_HOURS = np.array([str(h) for h in range(24)], dtype=object)
_DAYS = np.array(WEEKDAYS, dtype=object)


def iso_seconds(values: Sequence) -> np.ndarray | None:
    """Epoch seconds (int64) of a request's times when every one is a string written exactly as
    ``YYYY-MM-DD HH:MM:SS`` (`ISO_SECONDS`), checked and parsed at once: what `json_datetimes`
    reads from them, at under half its cost on a hundred values (0.3 on a thousand). None
    otherwise (a gap, another layout, an impossible date, a year 0, fewer than `VECTOR_ROWS`
    values): the value-by-value readers then read or name them."""
    n = len(values)
    if n < VECTOR_ROWS or set(map(type, values)) != {str}:
        return None
    text = np.array(values)
    if text.dtype != np.dtype("<U19"):  # some value longer than 19 characters (or all shorter)
        return None
    codes = text.view(np.uint32).reshape(n, 19)  # a shorter value ends in zeros: no digit, no separator
    digits = codes[:, _DIGITS] - ord("0")
    if ((codes[:, [4, 7]] != ord("-")).any() or (codes[:, 10] != ord(" ")).any()
            or (codes[:, [13, 16]] != ord(":")).any() or (digits > 9).any()):  # unsigned: below '0' wraps
        return None
    if not digits[:, :4].any(axis=1).all():  # year 0: numpy reads it, Python's datetime does not
        return None
    try:  # numpy checks months, days (leap years too), hours, minutes and seconds
        return text.astype("datetime64[s]").astype(np.int64)
    except ValueError:
        return None


def clock_keys_of_seconds(seconds: np.ndarray) -> tuple[list[str], list[str]]:
    """`clock_keys` of `iso_seconds`' values (the wall clock as written: no time zone)."""
    return _HOURS[seconds // 3600 % 24].tolist(), _DAYS[(seconds // 86400 + 3) % 7].tolist()  # 1970-01-01: Thu


def clock_keys(times: Sequence[datetime | None]) -> tuple[list[str | None], list[str | None]]:
    """`clock_features` of `json_datetimes`' values."""
    return ([None if t is None else str(t.hour) for t in times],
            [None if t is None else WEEKDAYS[t.weekday()] for t in times])


def clock_features(t: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Hour of day ("0".."23") and day of week ("Mon".."Sun") as category keys, None for gaps."""
    gap = t.isna().to_numpy()
    hour = pd.Series(np.where(gap, None, t.dt.hour.fillna(0).astype(int).astype(str).to_numpy()),
                     index=t.index, dtype=object)
    day = np.array(WEEKDAYS, dtype=object)[t.dt.day_of_week.fillna(0).astype(int).to_numpy()]
    return hour, pd.Series(np.where(gap, None, day), index=t.index, dtype=object)
