"""Reason codes a reviewer can read: for a row's most unusual columns, the value and what the model
expected there, in the units of the data: "amount 4,800 (typical 20 to 90)".

What "expected" means: what the model predicts for the column given the row's other values. The
column's inputs are set to a neutral start and then, a few times over, to what the decoder predicts
for them from the rest of the row (pseudo-Gibbs imputation, decoding the posterior mean as scores
do; the ensemble as an equal mixture of its members), so an extreme value does not drag its own
expectation along. For a number, the range of two standard deviations either side of the predicted
mean, mapped back to original units (un-scaled, un-logged) and kept within the training range; for
a category, a flag, or a time column's hour and weekday, the likeliest values with their probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from fraudvae import readers as read
from fraudvae.encoded import Encoded
from fraudvae.history.spec import ORDINARY
from fraudvae.preprocess import MISSING, OTHER, Preprocessor
from fraudvae.values import clock_features

TYPICAL_SDS = 2.0  # a number's typical range: the predicted mean plus or minus this many standard deviations
LIKELY = 3  # how many of the likeliest categories are named
LIKELY_MIN = 0.01  # and only those at least this likely
STEPS = 3  # pseudo-Gibbs passes: the column's inputs replaced by the decoder's prediction this many times
MAX_SHOWN = 60  # characters of a row's own value echoed in a reason; a longer value is cut, its length said


@dataclass(frozen=True)
class Expectations:
    """The decoder's predictive distribution for n rows, as numpy arrays (see `model.Predictive`)."""

    mean: np.ndarray  # (n, n_numeric) scaled
    sd: np.ndarray  # (n, n_numeric) scaled
    p_binary: np.ndarray  # (n, n_binary) in `Preprocessor.flag_layout` order
    p_categories: tuple[np.ndarray, ...]  # per `Preprocessor.category_features` feature: (n, k)


@dataclass(frozen=True)
class Reason:
    """One column of one row: its value and what the model expected, as text and as data."""

    column: str
    value: str  # the row's value as a reviewer reads it ("missing" for a gap)
    expected: str  # what the model expected, in words: "typical 20 to 90", "likely grocery 62%, fuel 20%"
    excess: float  # nats above the column's typical contribution on validation normals
    low: float | None = None  # a number's typical range, in original units
    high: float | None = None
    likely: tuple[tuple[str, float], ...] = ()  # a category's likeliest values and probabilities

    def text(self) -> str:
        return f"{self.column} {self.value} ({self.expected})"

    def to_dict(self) -> dict:
        d: dict = {"column": self.column, "value": self.value, "expected": self.expected,
                   "excess_nats": round(self.excess, 4), "text": self.text()}
        if self.low is not None:
            d["typical_low"], d["typical_high"] = self.low, self.high
        if self.likely:
            d["likely"] = [{"value": v, "probability": round(p, 4)} for v, p in self.likely]
        return d


def explain_rows(pre: Preprocessor, enc: Encoded, data: pd.DataFrame | Mapping[str, Sequence], typed: bool,
                 columns: np.ndarray, excess: np.ndarray,
                 expect: Callable[[Encoded], Expectations],
                 history: frozenset[str] = frozenset()) -> list[list[Reason]]:
    """Per row of `data` (a frame, or column lists of JSON values with ``typed``; `enc` its encoding), a
    `Reason` for each column named in its row of `columns` (n, k), with its `excess` (n, k). Left out:
    a column with no excess (-inf: its value is a gap that says nothing), and one whose value is what
    the model expected (a number inside its typical range, a category or flag that is the likeliest):
    a reason says what is unusual. `expect` runs the decoder (`Scorer.expectations`). Columns named in
    `history` (history features) are said in words: "CUSTOMER_ID: amount 8.1 spreads above its 30d
    usual (typical within 2 spreads for 97% of transactions)"."""
    pairs = [(r, str(name), float(nats)) for r in range(len(columns))
             for name, nats in zip(columns[r], excess[r], strict=True) if np.isfinite(nats)]
    expected = conditional(pre, enc.take(np.array([r for r, _, _ in pairs], dtype=np.int64)),
                           [name for _, name, _ in pairs], expect)
    shown = {name: _shown(pre, data, name, typed) for name in {name for _, name, _ in pairs}}
    raw = {name: _raw_numbers(pre, data, name, typed) for name in shown if name in pre.numeric}
    binary_at = {key: j for j, key in enumerate(pre.flag_layout())}
    category_at = {(name, part): j for j, (name, part, _, _) in enumerate(pre.category_features())}
    numeric_at = {name: j for j, name in enumerate(pre.numeric)}
    out: list[list[Reason]] = [[] for _ in range(len(columns))]
    for q, (r, name, nats) in enumerate(pairs):
        low = high = None
        likely: tuple[tuple[str, float], ...] = ()
        atom = math.nan  # the training rows' share at the column's point mass, when it has one
        if name in pre.numeric:
            expect_text, low, high = _numeric(pre, name, expected, q, numeric_at[name], binary_at)
            s = pre.numeric[name]
            atom = math.nan if s.point_mass_share is None else s.point_mass_share
            off_atom = atom >= 0.5 and raw[name][r] != s.point_mass  # off the point mass most rows were at
            if low <= raw[name][r] <= high and not off_atom:  # inside its typical range: not what makes the
                continue  # row unusual
        elif name in pre.binary:
            expect_text, likely = _binary(pre, name, expected.p_binary[q, binary_at[("value", name)]])
            if likely[0][0] == shown[name][r]:
                continue
        elif name in pre.categorical:
            c = pre.categorical[name]
            expect_text, likely = _likely(c.vocabulary, expected.p_categories[category_at[(name, None)]][q], c.missing)
            if likely and likely[0][0] == shown[name][r]:
                continue
        else:  # a time column: its hour of day and day of week
            t = pre.times[name]
            hours, likely_hours = _likely(t.hour, expected.p_categories[category_at[(name, "hour")]][q], t.missing,
                                          "{}h")
            days, likely_days = _likely(t.weekday, expected.p_categories[category_at[(name, "weekday")]][q], t.missing)
            expect_text, likely = f"{hours}; {days}", likely_hours + likely_days
        reason = Reason(name, shown[name][r], expect_text, nats, low, high, likely)
        out[r].append(_in_words(reason, raw.get(name, np.full(r + 1, np.nan))[r], atom) if name in history
                      else reason)
    return out


def _in_words(r: Reason, x: float, atom: float = math.nan) -> Reason:
    """A history feature's reason as a reviewer reads it (see `fraudvae.history` for the features);
    `atom`: the share of training rows at the feature's "nothing out of the ordinary" (0), when it has one."""
    entity, _, what = r.column.partition(": ")
    low, high = r.low, r.high
    likely = ""
    if np.isfinite(atom):  # 99.7% is not said as 100%
        likely = f" for {atom:.0%} of transactions" if atom < 0.99 or atom == 1.0 else \
            f" for {math.floor(atom * 1000) / 10:.1f}% of transactions"
    if what.startswith("amount beyond "):  # the spreads beyond ORDINARY of the usual
        window, side = what.split()[2], "above" if x >= 0 else "below"
        return replace(r, column=f"{entity}: amount", value=f"{abs(x) + ORDINARY:.1f} spreads {side} its {window} "
                       f"usual" if x else f"within {ORDINARY:g} spreads of its {window} usual",
                       expected=f"typical within {ORDINARY:g} spreads{likely}")
    if what.startswith("amounts beyond usual in "):  # the run window's amounts beyond the usual, beyond chance
        return replace(r, column=entity, value=f"{x:.2g} more of its amounts beyond its usual in the last "
                       f"{what.split()[-1]} than chance explains", expected=f"typical none more{likely}")
    if what.startswith("tx in ") and what.endswith(" above pace"):
        return replace(r, column=entity, value=f"{x:.2g} more transactions in the last {what.split()[2]} than its "
                       f"pace allows", expected=f"typical none more{likely}")
    if what.startswith("amount vs ") and low is not None and high is not None:
        window = what.split()[2]
        side = "above" if x >= 0 else "below"
        return replace(r, column=f"{entity}: amount", value=f"{abs(x):.1f} spreads {side} its {window} usual",
                       expected=f"typical {low:+.1f} to {high:+.1f}")
    if what.startswith("tx in ") and low is not None and high is not None:
        return replace(r, column=entity, value=f"{x:.1f} transactions in the last {what.split()[2]}",
                       expected=f"typical {max(low, 0):.1f} to {high:.1f}")
    if what == "hours since previous" and low is not None and high is not None:
        return replace(r, column=entity, value=f"{x:.2g} hours since its previous transaction",
                       expected=f"typical {max(low, 0):.2g} to {high:.2g}")
    if what.startswith("fraud share known in ") and low is not None and high is not None:
        return replace(r, column=entity, value=f"{x:.0%} of its labelled transactions confirmed as fraud "
                       f"(weighted by how recently known, over {what.split()[4]})",
                       expected=f"typical {max(low, 0):.0%} to {min(high, 1):.0%}")
    if what.startswith("frauds known in ") and low is not None and high is not None:
        return replace(r, column=entity, value=f"{x:.1f} of its transactions confirmed as fraud (weighted by how "
                       f"recently known, over {what.split()[3]})", expected=f"typical {max(low, 0):.1f} to {high:.1f}")
    if what.startswith("new ") and r.likely:
        p_seen = dict(r.likely).get("0", 0.0)
        return replace(r, column=entity, value=f"{what[4:]} {'new to it' if r.value == '1' else 'seen before'}",
                       expected=f"seen before {p_seen:.0%} likely")
    return r


def conditional(pre: Preprocessor, enc: Encoded, columns: list[str],
                expect: Callable[[Encoded], Expectations]) -> Expectations:
    """What the model expects of row i's column ``columns[i]`` given its other values: the column's
    inputs start neutral (scaled numbers at their mean, flags at 1/2, categories at the commonest)
    and are replaced by the decoder's prediction `STEPS` times; the last prediction is returned."""
    owners = np.array(pre.feature_owners(), dtype=object)
    n_num, n_bin = enc.numeric.shape[1], enc.binary.shape[1]
    target = np.array(columns, dtype=object)[:, None]
    num_mask, bin_mask = owners[:n_num] == target, owners[n_num: n_num + n_bin] == target
    cat_mask = owners[n_num + n_bin:] == target
    commonest = np.array([2 if k > 2 else OTHER for k in pre.cardinalities], dtype=np.int64)
    numeric = np.where(num_mask, 0.0, enc.numeric).astype(np.float32)
    binary = np.where(bin_mask, 0.5, enc.binary).astype(np.float32)
    categorical = np.where(cat_mask, commonest, enc.categorical)
    expected = expect(Encoded(numeric, enc.observed, binary, categorical))
    for _ in range(STEPS - 1):
        numeric = np.where(num_mask, expected.mean, enc.numeric).astype(np.float32)
        binary = np.where(bin_mask, expected.p_binary, enc.binary).astype(np.float32)
        guess = (np.stack([p.argmax(1) for p in expected.p_categories], axis=1) if expected.p_categories
                 else enc.categorical)
        categorical = np.where(cat_mask, guess, enc.categorical)
        expected = expect(Encoded(numeric, enc.observed, binary, categorical))
    return expected


def _numeric(pre: Preprocessor, name: str, expected: Expectations, r: int, j: int,
             binary_at: dict[tuple[str, str], int]) -> tuple[str, float, float]:
    s = pre.numeric[name]
    mean, sd = expected.mean[r, j], expected.sd[r, j]
    ends = []
    for v in (mean - TYPICAL_SDS * sd, mean + TYPICAL_SDS * sd):
        t = v * s.scale + s.center
        x = math.copysign(math.expm1(min(abs(t), 700.0)), t) if s.log else t
        ends.append(min(max(x, -math.inf if s.min is None else s.min), math.inf if s.max is None else s.max))
    low, high = ends
    a, b = number(low, s.decimals), number(high, s.decimals)
    text = f"typical {a} to {b}" if a != b else f"typical {a}"
    if s.point_mass is not None:
        p = expected.p_binary[r, binary_at[("point_mass", name)]]
        text += f", or exactly {number(s.point_mass)} ({p:.0%} likely)"
    if s.indicator:
        p = expected.p_binary[r, binary_at[("missing", name)]]
        text += f"; missing {p:.0%} likely"
    return text, float(low), float(high)


def _binary(pre: Preprocessor, name: str, p: float) -> tuple[str, tuple[tuple[str, float], ...]]:
    low, high = _flag_words(pre, name)
    likely = ((high, float(p)), (low, float(1 - p))) if p >= 0.5 else ((low, float(1 - p)), (high, float(p)))
    return f"expected {likely[0][0]} {likely[0][1]:.0%}", likely


def _likely(vocabulary: tuple[str, ...], p: np.ndarray, learned_gap: bool,
            shown: str = "{}") -> tuple[str, tuple[tuple[str, float], ...]]:
    """The likeliest categories of one feature, most likely first, as text and pairs (`shown`
    formats a category in the text: "{}h" for an hour)."""
    names = ["another value", "missing", *(shown.format(k) for k in vocabulary)]
    p = np.array(p, dtype=float)
    if not learned_gap:
        p[MISSING] = 0.0
    order = [int(i) for i in np.argsort(-p, kind="stable")[:LIKELY] if p[i] >= LIKELY_MIN]
    likely = tuple((names[i], float(p[i])) for i in order)
    return "likely " + ", ".join(f"{v} {q:.0%}" for v, q in likely), likely


def _flag_words(pre: Preprocessor, name: str) -> tuple[str, str]:
    b = pre.binary[name]
    if b.low is None:
        return "false", "true"
    return number(b.low), number(b.high if b.high is not None else 0.0)


def _values(data: pd.DataFrame | Mapping[str, Sequence], name: str, typed: bool) -> pd.Series | list:
    values = data[name]
    return list(values) if typed else pd.Series(values).reset_index(drop=True)


def _raw_numbers(pre: Preprocessor, data: pd.DataFrame | Mapping[str, Sequence], name: str,
                 typed: bool) -> np.ndarray:
    """A numeric column's values in original units (NaN for gaps), read as scoring reads them."""
    return read.numbers(_values(data, name, typed), name, pre.numeric[name].decimal, typed=typed)


def clip(text: str, most: int = MAX_SHOWN) -> str:
    """A value to echo, at most `most` characters: a longer one is cut and its length said."""
    return text if len(text) <= most else f"{text[:most]}... ({len(text):,} characters)"


def _shown(pre: Preprocessor, data: pd.DataFrame | Mapping[str, Sequence], name: str, typed: bool) -> list[str]:
    """A column's values as a reviewer reads them, read as scoring reads them, long ones clipped."""
    values = _values(data, name, typed)
    if name in pre.numeric:
        return [value(x) for x in read.numbers(values, name, pre.numeric[name].decimal, typed=typed)]
    if name in pre.binary:
        low, high = _flag_words(pre, name)
        return ["missing" if np.isnan(x) else high if x > 0.5 else low
                for x in read.flags(values, name, pre.binary[name], typed=typed)]
    if name in pre.categorical:
        vocabulary = set(pre.categorical[name].vocabulary)
        return ["missing" if k is None else k if k in vocabulary else f"{clip(k)} (rare or new)"
                for k in read.keys(values, name, typed=typed)]
    t = read.times(values, name, pre.times[name], typed=typed)
    hour, day = clock_features(t)
    return ["missing" if h is None else f"{when:%Y-%m-%d %H:%M} (hour {h}, {d})"
            for when, h, d in zip(t, hour, day, strict=True)]


def number(x: float, decimals: int | None = None) -> str:
    """Three significant digits at least, whole numbers in full, thousands separated: 50,000 / 23.5 /
    0.042; no more `decimals` than the column is written with."""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    places = max(0, 2 - math.floor(math.log10(abs(x))))
    if decimals is not None:
        places = min(places, decimals)
    text = f"{x:,.{places}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text == "-0" else text


def value(x: float) -> str:
    """A row's own number, as exact as it was written (up to 6 decimals), thousands separated."""
    if math.isnan(x):
        return "missing"
    text = f"{x:,.6f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"
