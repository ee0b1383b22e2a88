import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from fraudvae.values import (
    clock_features,
    decimal_mark,
    epoch_unit,
    guess_time_format,
    looks_like_time_name,
    parse_number,
    parse_numbers,
    parse_times,
)


@pytest.mark.parametrize(("text", "value"), [
    ("1,355.21", 1355.21), ("$12.50", 12.5), ("-$12.50", -12.5), ("$-12.50", -12.5), ("+0.52", 0.52),
    ("(0.52)", -0.52), ("0.52-", -0.52), ("12 €", 12.0), ("USD 7", 7.0), ("1e5", 1e5), (" 42 ", 42.0),
    ("1,234,567", 1234567.0), (".5", 0.5),
])
def test_written_numbers(text, value):
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "NA", "N/A", "null", "NaN", "-", "?", "none"])
def test_missing_markers_are_gaps(text):
    assert math.isnan(parse_number(text))


@pytest.mark.parametrize("text", ["abc", "12..5", "x7", "1,23.4", "--5", "(-5)", "1 000", "12,50"])
def test_not_numbers(text):
    assert parse_number(text) is None


def test_decimal_comma_columns():
    s = pd.Series(["12,50", "1.234,56", "3"])
    assert decimal_mark(s) == ","
    x, bad = parse_numbers(s, ",")
    assert x.tolist() == [12.5, 1234.56, 3.0] and not bad.any()
    assert decimal_mark(pd.Series(["1,355", "12.5"])) == "."  # "1,355" alone proves nothing


def test_parse_numbers_marks_what_is_not_a_number():
    x, bad = parse_numbers(pd.Series(["1,355.21", "abc", None, "NA", "3"], dtype=object))
    assert np.isnan(x[[1, 2, 3]]).all() and x[0] == 1355.21 and x[4] == 3.0
    assert bad.tolist() == [False, True, False, False, False]


def test_time_names_and_epochs():
    for name in ("timestamp", "time", "trans_date", "created_at", "eventTime", "ts"):
        assert looks_like_time_name(name), name
    for name in ("amount", "counts", "hour", "status"):
        assert not looks_like_time_name(name), name
    assert epoch_unit(np.array([1.7e9, 1.71e9])) == "s" and epoch_unit(np.array([1.7e12])) == "ms"
    assert epoch_unit(np.array([0.0, 172792.0])) is None  # seconds since the start of a file, not a clock


def test_time_formats_and_wall_clock():
    assert guess_time_format(pd.Series(["8/3/2020 6:18", "8/13/2020 16:18"])) == ("%m/%d/%Y %H:%M", 1.0)
    assert guess_time_format(pd.Series(["13/3/2020 6:18", "8/3/2020 16:18"]))[0] == "%d/%m/%Y %H:%M"
    assert guess_time_format(pd.Series(["A12", "B7"]))[0] is None
    # offsets are not converted away: the hour is the one written
    t, bad = parse_times(pd.Series(["2024-03-04T23:12:00+02:00", "2024-03-04T08:12:00-05:00"]), "%Y-%m-%dT%H:%M:%S%z")
    assert not bad.any() and t.dt.hour.tolist() == [23, 8]
    t, bad = parse_times(pd.Series(["2024-03-04T08:12:00", "not a time", None], dtype=object), "%Y-%m-%dT%H:%M:%S")
    assert bad.tolist() == [False, True, False] and pd.isna(t[2])
    hour, day = clock_features(t)
    assert hour.tolist() == ["8", None, None] and day.tolist() == ["Mon", None, None]
    t, bad = parse_times(pd.Series([1_709_539_920, None]), None, "s")  # 2024-03-04 08:12 UTC
    assert not bad.any() and t.dt.hour[0] == 8


def test_a_decimal_comma_column_is_numeric_end_to_end():
    from fraudvae import FraudVAE

    rng = np.random.default_rng(0)
    x = rng.lognormal(3, 1, 400).round(2)
    euro = [f"{v:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".") for v in x]  # 1.234,56
    det = FraudVAE(epochs=2, seed=0).fit(pd.DataFrame({"amount": euro, "b": rng.normal(size=400)}))
    assert det.schema_.names("numeric") == ["amount", "b"]
    assert det.preprocessor_.numeric["amount"].decimal == ","
    frame = pd.DataFrame({"amount": euro, "b": 0.5})
    np.testing.assert_array_equal(det.score_samples(frame), det.score_samples(frame.assign(amount=x)))


@pytest.mark.parametrize("fmt, values", [
    ("%Y-%m-%d %H:%M:%S", ["2024-03-16 23:59:59", " 2024-02-29 00:00:01 ", None, "2024-03-17 12:00:00"]),
    ("%Y-%m-%dT%H:%M:%S.%f", ["2024-03-16T23:59:59.123456", "2024-03-16T00:00:00.5"]),
    ("%Y-%m-%dT%H:%M:%S%z", ["2024-03-16T23:30:00+05:00", "2024-03-16T01:00:00-08:00"]),
    ("%d/%m/%Y %H:%M", ["16/03/2024 07:05", "01/12/2023 18:45"]),
])
def test_a_requests_times_read_value_by_value_as_pandas_reads_them(fmt, values):
    from fraudvae.history.features import _strptime
    from fraudvae.readers import epoch_seconds
    from fraudvae.values import clock_keys, json_datetimes

    fast = json_datetimes(values, fmt)
    assert fast is not None
    t, bad = parse_times(pd.Series(values, dtype=object), fmt)
    assert not bad.any()
    hour, day = clock_features(t)
    assert clock_keys(fast) == (hour.tolist(), day.tolist())
    if None not in values:
        np.testing.assert_array_equal(_strptime(values, fmt), epoch_seconds(t))
    # anything else goes to the general reader, which reads or names it
    assert json_datetimes([*values, 5], fmt) is None
    assert json_datetimes([*values, "not a time"], fmt) is None
    assert json_datetimes(values * 600, fmt) is None  # many rows: pandas is faster


def test_a_requests_iso_times_read_at_once_as_value_by_value_and_pandas_read_them():
    from fraudvae.history.features import MICROSECOND, _strptime
    from fraudvae.readers import epoch_seconds
    from fraudvae.values import (
        ISO_SECONDS,
        VECTOR_ROWS,
        clock_keys,
        clock_keys_of_seconds,
        iso_seconds,
        json_datetimes,
    )

    rng = np.random.default_rng(0)
    # 1700 to 2250 (pandas' range), both sides of the epoch, leap days, every hour and weekday
    stamps = pd.Timestamp("1700-01-01") + pd.to_timedelta(rng.integers(0, 550 * 365 * 86400, 500), unit="s")
    values = [*stamps.strftime(ISO_SECONDS), "2024-02-29 23:59:59", "1969-12-31 23:00:00", "1970-01-01 00:00:00"]
    at_once = iso_seconds(values)
    assert at_once is not None
    t, bad = parse_times(pd.Series(values, dtype=object), ISO_SECONDS)
    assert not bad.any()
    np.testing.assert_array_equal(at_once, t.to_numpy(dtype="datetime64[s]").astype(np.int64))
    np.testing.assert_array_equal(_strptime(values, ISO_SECONDS), epoch_seconds(t))
    hour, day = clock_features(t)
    assert clock_keys_of_seconds(at_once) == (hour.tolist(), day.tolist()) == clock_keys(json_datetimes(values[:900],
                                                                                                      ISO_SECONDS))
    early = ["0001-01-01 00:00:00", "0999-12-31 23:59:59", *values[:40]]  # years pandas cannot hold, Python can
    np.testing.assert_array_equal(iso_seconds(early), [(d - datetime(1970, 1, 1)).total_seconds()
                                                       for d in json_datetimes(early, ISO_SECONDS)])
    np.testing.assert_array_equal(_strptime(early, ISO_SECONDS), [((d - datetime(1970, 1, 1)) // MICROSECOND * 1000)
                                                                  / 1e9 for d in json_datetimes(early, ISO_SECONDS)])
    # whatever the value-by-value reader reads otherwise or refuses, it is left to
    good = ["2024-03-16 12:00:00"] * VECTOR_ROWS
    for odd in ["2024-02-30 10:00:00", "2023-02-29 10:00:00", "2024-01-01 24:00:00", "2024-01-01 23:60:00",
                "2024-01-01 23:59:60", "0000-01-01 00:00:00", "2024-13-01 00:00:00", "2024-01-01T00:00:00",
                "2024/01/01 00:00:00", " 2024-01-01 00:00:00", "2024-01-01 00:00:0", "2024-01-01 00:00:000",
                "2024-01-01 0a:00:00", "2024-01-01 00:00:0\u0663", "+024-01-01 00:00:00", None, 5]:
        assert iso_seconds([*good, odd]) is None, odd
    assert iso_seconds(good[1:]) is None  # a few values: value by value costs less
    assert iso_seconds(good) is not None
