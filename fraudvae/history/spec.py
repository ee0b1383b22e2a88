"""What a model's history features are: the entities, the clock, the amount, the windows and the
columns checked for novelty (`HistorySpec`), fixed at fit and saved with the model."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

DEFAULT_WINDOWS = (3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0)  # 1 hour, 1 day, 7 days, 30 days
LONG_WINDOW = 7 * 86400.0  # with a window at least this long, the amount's usual centre and spread are kept
# the amount's usual is kept over this window, or the longest if longer (`HistorySpec.usual_window`): on the
# Handbook's data, seeds 0-4, scenario 3 in the top 1% .864 against .840 over 30 days (bench/RESULTS.md)
USUAL_WINDOW = 90 * 86400.0
AMOUNT_NAMES = ("amount", "amt", "value", "tx_amount", "transaction_amount", "txn_amount", "trx_amount",
                "purchase_amount", "payment_amount", "price", "total")
MAX_VALUES = 64  # distinct values remembered per entity and column, for novelty (the most recent ones)
# a new entity's usual amount is the population's, worth this many transactions (`HistorySpec.prior_weight`): the
# population's spread, added as a transaction's worth of scatter, widens every entity's spread, most of all
# where amounts are small; on the Handbook's data, seeds 0-4, scenario 3 in the top 1% .888 at 1 against
# .864 at 3, AP .338 against .330 (bench/RESULTS.md)
PRIOR_WEIGHT = 1.0
PRIOR_WEIGHT_BEFORE = 3.0  # models saved before `HistorySpec.prior_weight`
MIN_SPREAD = 0.05  # the smallest spread of an entity's signed-log amount (5%): equal amounts are no certainty
MIN_COVER = 0.1  # a count on a history younger than its window is scaled up by at most 10x
CLIP = 2.0  # a transaction moves its entity's usual by at most this many spreads (a fraud run cannot drag it)
ORDINARY = 2.0  # spreads of the usual, and Poisson deviations of a count, that are no news (`HistorySpec.excess`)
BY_CHANCE = 0.025  # the share of amounts beyond ORDINARY spreads of the usual by chance, until fitted (`by_chance`)
RISK_MIN_WINDOW = 86400.0  # confirmed frauds are counted over a window of a day or more
LABEL_FIELDS = ("label_column", "label_delay", "label_time_column", "label_time_unit", "label_time_format",
                "label_windows", "risk_measures")
# what an entity's confirmed frauds give a row (`fraudvae.history.risk`): "share", the share of its labels known
# that say fraud; "frauds", their number (models saved before the share had only that)
RISK_MEASURES = ("share",)
RISK_WORDS = {"frauds": "frauds known", "share": "fraud share known"}  # each measure's feature name (less the window)
UNITS = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0}


def parse_window(text: str) -> float:
    """Seconds of a window written as 1h, 1d, 7d, 30min, 90s or 2w; a `ValueError` says what is accepted."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(w|d|h|min|m|s)\s*", text)
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"window {text!r} is not a positive span such as 1h, 1d, 7d or 30min (units w, d, h, min, s)")
    return float(m.group(1)) * UNITS[m.group(2)]


def window_label(seconds: float) -> str:
    """1h, 1d, 7d, 30min: the shortest exact writing of a window."""
    for unit in ("d", "h", "min"):
        n = seconds / UNITS[unit]
        if n >= 1 and float(n).is_integer():
            return f"{int(n)}{unit}"
    return f"{seconds:g}s"


def find_amount_column(columns: list[str]) -> str | None:
    """The column named like a transaction amount (amount, amt, value, TX_AMOUNT, ...), if one is."""
    def norm(c: str) -> str:
        return re.sub(r"[^a-z]", "_", c.lower()).strip("_")

    by_name = {norm(c): c for c in columns}
    for name in AMOUNT_NAMES:
        if name in by_name:
            return by_name[name]
    found = [c for c in columns if re.search(r"(^|_)(amount|amt)($|_)", norm(c))]
    return found[0] if len(found) == 1 else None


def signed_log(x: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): amounts of every size, refunds included, on one scale."""
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass(frozen=True)
class HistorySpec:
    """The history features of a model. For each entity column, from its strictly earlier
    transactions: the (exponentially decayed) number of transactions in each window, the time since
    the previous one, over `usual_window` (with a window of at least 7 days) this amount's distance
    from the entity's usual (in spreads of its amount), for each novelty column whether this value is
    new to the entity, and with a label column and a delay (or a label time column) its frauds known
    before the row, over one window (`risk_window`, `fraudvae.history.risk`)."""

    entities: tuple[str, ...]
    time_column: str
    amount_column: str | None
    windows: tuple[float, ...] = DEFAULT_WINDOWS  # seconds, ascending
    novelty: tuple[str, ...] = ()  # categorical columns (other entities among them)
    amount_prior: tuple[float, float] = (0.0, 1.0)  # the population's centre and spread of the signed-log amount
    max_values: int = MAX_VALUES
    time_unit: str | None = None  # how the time column is written, as the preprocessor reads it: epoch "s"/"ms",
    time_format: str | None = None  # or text in this format (None: ISO 8601)
    decimal: str = "."  # the amount column's decimal mark
    scale: str = "linear"  # the amount's usual and spread in its own units ("linear") or of its signed log ("log")
    # confirmed frauds as history (`fraudvae.history.risk`): the label column, known this long after each
    # transaction (`label_delay`, seconds) or at the time in `label_time_column` (read as `label_time_unit`/_format)
    label_column: str | None = None
    label_delay: float | None = None
    label_time_column: str | None = None
    label_time_unit: str | None = None
    label_time_format: str | None = None
    label_windows: tuple[float, ...] = ()  # the window(s) confirmed frauds are counted over (`risk_window`)
    risk_measures: tuple[str, ...] = RISK_MEASURES  # of the confirmed frauds, per window: "share" and/or "frauds"
    # features as what is beyond the ordinary (0 for most rows: a point mass the model learns as one, see
    # `atoms`): the amount's spreads beyond ORDINARY of the usual, each shorter window's count beyond the
    # entity's own pace. False: the raw deviation and counts, as models saved before this was added have it
    excess: bool = True
    # the share of amounts beyond ORDINARY spreads of their entity's usual in the training file: what
    # chance gives in an entity's run of them (`run_window`; fitted, `fraudvae.fitting.with_history`)
    by_chance: float = BY_CHANCE
    # whether an amount joins the run (`run_window`) by its distance from the usual before its time's
    # transactions (True: the run then does not depend on the order transactions of one time arrive in)
    # or from the usual after the ones that came first (models saved before this was added)
    run_before_time: bool = True
    # the time constant of the amount's usual (seconds, at least LONG_WINDOW); None: the longest window, as
    # models saved before this was added have it
    usual_window: float | None = None
    prior_weight: float = PRIOR_WEIGHT  # the population's usual is worth this many transactions (`PRIOR_WEIGHT`)

    def on_scale(self, amounts: np.ndarray) -> np.ndarray:
        """Amounts on the scale their usual and spread are kept on."""
        return amounts if self.scale == "linear" else signed_log(amounts)

    @cached_property
    def long_windows(self) -> tuple[float, ...]:
        """The window the amount's usual is kept over (`usual_window`, else the longest), when some
        window is at least 7 days (a shorter usual follows a run of frauds; one usual per entity keeps
        the features few)."""
        longest = max(self.windows)
        return (self.usual_window or longest,) if self.amount_column and longest >= LONG_WINDOW else ()

    @cached_property
    def horizon(self) -> float:
        """The longest time constant of an entity's state: how long it means something unseen."""
        return max(self.windows + self.long_windows)

    @cached_property
    def risk_windows(self) -> tuple[float, ...]:
        """The windows an entity's confirmed frauds are counted over (none without labels)."""
        return self.label_windows if self.label_column is not None else ()

    @cached_property
    def paced(self) -> tuple[float, ...]:
        """The windows whose count is kept as its excess over the entity's pace in the longest one
        (with `excess`: every window but the longest)."""
        return tuple(w for w in self.windows if w < max(self.windows)) if self.excess else ()

    @cached_property
    def run_window(self) -> float | None:
        """With `excess` and an amount's usual: the window over which the entity's amounts beyond the
        usual are counted (a compromised card's run of large purchases), the shortest of at least 7 days."""
        if not (self.excess and self.long_windows):
            return None
        return min(w for w in self.windows if w >= LONG_WINDOW)

    @cached_property
    def count_windows(self) -> tuple[float, ...]:
        """The time constants of an entity's decayed counts: one per window, then the run window's
        count of amounts beyond the usual, when there is one (`EntityTable.counts`)."""
        return self.windows + (() if self.run_window is None else (self.run_window,))

    def atoms(self) -> list[str]:
        """The derived columns whose 0 means "nothing out of the ordinary" and is common: modelled
        as a point mass plus a spread (`PreprocessConfig.atoms`), so most rows pay nothing for them."""
        if not self.excess:
            return []
        out = []
        for e in self.entities:
            out += self.paced_names(e) + self.amount_names(e) + self.run_names(e)
            # not the confirmed frauds (`risk_names`): as a Gaussian on a count that is 0 for almost every
            # normal row, one confirmed fraud weighs heavily, which finds compromised terminals; as a point
            # mass it weighed little (on the Handbook, scenario 2 in the top 1% .33 against .61, bench/RESULTS.md)
        return out

    def novelty_of(self, entity: str) -> tuple[str, ...]:
        return tuple(c for c in self.novelty if c != entity)

    def features(self) -> list[tuple[str, str]]:
        """(name, role) of every derived column, in order: what the model reads besides the file's."""
        return list(self._features)

    @cached_property
    def _features(self) -> tuple[tuple[str, str], ...]:
        # a spec is frozen: its derived names and windows are worked out once (every request reads them)
        out: list[tuple[str, str]] = []
        for e in self.entities:
            if self.excess:
                out += [(name, "numeric") for name in self.paced_names(e)]
                if len(self.windows) == 1:  # no pace to compare with: the count itself
                    out.append((f"{e}: tx in {window_label(self.windows[0])}", "numeric"))
            else:
                out += [(f"{e}: tx in {window_label(w)}", "numeric") for w in self.windows]
                out.append((f"{e}: hours since previous", "numeric"))
            out += [(name, "numeric") for name in self.amount_names(e) + self.run_names(e)]
            out += [(f"{e}: new {c}", "binary") for c in self.novelty_of(e)]
            out += [(name, "numeric") for name in self.risk_names(e)]
        return tuple(out)

    def paced_names(self, entity: str) -> list[str]:
        """The entity's counts above its pace, one per window of `paced` (none without `excess`)."""
        return [f"{entity}: tx in {window_label(w)} above pace" for w in self.paced]

    def amount_names(self, entity: str) -> list[str]:
        """The entity's amount against its usual, one per long window: beyond it with `excess`, else vs it."""
        return [f"{entity}: amount {'beyond' if self.excess else 'vs'} {window_label(w)} usual"
                for w in self.long_windows]

    def run_names(self, entity: str) -> list[str]:
        """The entity's earlier amounts beyond its usual, more than chance explains (`run_window`)."""
        w = self.run_window
        return [] if w is None else [f"{entity}: amounts beyond usual in {window_label(w)}"]

    def risk_names(self, entity: str) -> list[str]:
        """The confirmed-fraud features of an entity column (`fraudvae.history.risk`), window by window."""
        return [f"{entity}: {RISK_WORDS[m]} in {window_label(w)}"
                for w in self.risk_windows for m in self.risk_measures]

    def names(self) -> list[str]:
        return list(self._names)

    @cached_property
    def _names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._features)

    def columns(self) -> list[str]:
        """The columns of the data the history reads: the clock, the entities, the amount, the novelty ones."""
        return list(dict.fromkeys([self.time_column, *self.entities,
                                   *([self.amount_column] if self.amount_column else []), *self.novelty]))

    def optional_columns(self) -> list[str]:
        """Columns read when the data has them: the label and the time it became known (a file or
        request without them adds no confirmations, and the pending ones still come due)."""
        return [c for c in (self.label_column, self.label_time_column) if c is not None]

    def key(self) -> str:
        """A digest of the specification: state kept under it is only read by models with this one."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.label_column is None:  # a specification without labels keeps the key it had before labels existed
            for name in LABEL_FIELDS:
                del d[name]
        elif self.risk_measures == ("frauds",):  # nor one saved before the fraud share
            del d["risk_measures"]
        if not self.excess:  # nor one saved before the excess features
            del d["excess"], d["by_chance"]
        if not self.run_before_time or not self.excess:  # nor one saved before the run's fix
            del d["run_before_time"]
        if self.usual_window is None:  # nor one saved before the usual's own window
            del d["usual_window"]
        if self.prior_weight == PRIOR_WEIGHT_BEFORE:  # nor one saved before the prior's weight was its own
            del d["prior_weight"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> HistorySpec:
        return cls(entities=tuple(d["entities"]), time_column=d["time_column"], amount_column=d["amount_column"],
                   windows=tuple(float(w) for w in d["windows"]), novelty=tuple(d["novelty"]),
                   amount_prior=(float(d["amount_prior"][0]), float(d["amount_prior"][1])),
                   max_values=int(d.get("max_values", MAX_VALUES)), time_unit=d.get("time_unit"),
                   time_format=d.get("time_format"), decimal=d.get("decimal", "."), scale=d.get("scale", "log"),
                   label_column=d.get("label_column"),
                   label_delay=None if d.get("label_delay") is None else float(d["label_delay"]),
                   label_time_column=d.get("label_time_column"), label_time_unit=d.get("label_time_unit"),
                   label_time_format=d.get("label_time_format"),
                   label_windows=tuple(float(w) for w in d.get("label_windows", ())),
                   # a labelled specification without the key was saved before the share (a plain one has no use for it)
                   risk_measures=check_measures(d.get("risk_measures",
                                                 ("frauds",) if d.get("label_column") else RISK_MEASURES)),
                   excess=bool(d.get("excess", False)), by_chance=float(d.get("by_chance", BY_CHANCE)),
                   run_before_time=bool(d.get("run_before_time", False)),
                   usual_window=None if d.get("usual_window") is None else float(d["usual_window"]),
                   prior_weight=float(d.get("prior_weight", PRIOR_WEIGHT_BEFORE)))


def check_measures(given: Iterable, what: str = "risk_measures") -> tuple[str, ...]:
    """`risk_measures` as given (a saved specification's: a model file is input like any other; or
    `fit`'s), each once; a `ValueError` naming `what` unless they are "share" and/or "frauds"."""
    measures = tuple(dict.fromkeys(given))
    if not measures or not set(measures) <= RISK_WORDS.keys():
        raise ValueError(f"{what} {','.join(map(str, measures))!r}: give share, frauds or both (share,frauds)")
    return measures


def risk_window(windows: tuple[float, ...], delay: float, measures: tuple[str, ...] = RISK_MEASURES) -> float:
    """The one window confirmed frauds are weighed over. For the share (`risk_measures`, new models):
    the shortest of the model's windows of a day or more, whatever the delay. Frauds and labels known
    decay alike, so the share is an average of the entity's labels weighted by how recently each became
    known: a short window keeps it on the latest verdicts (a compromise confirmed, then the transactions
    after it confirmed normal) without forgetting an entity whose labels stopped coming; under a day it
    rests on too few labels (on the Handbook's data, seed 0: AP .533 at 1 hour, .630 at 1 day, .595 at 7
    days, .480 at 30). For the number of frauds (models saved before the share): the shortest window
    that spans the label delay (and a day at least), else the longest: a longer one keeps an entity
    suspect long after its frauds stopped (a 30-day count found 41% of the compromised terminals' frauds
    in the top 1% against 62% for 7 days). Every further window is one more term of noise on every row
    (`bench/RESULTS.md`)."""
    if measures != ("frauds",):
        delay = 0.0
    return min((w for w in windows if w >= max(delay, RISK_MIN_WINDOW)), default=max(windows))


def amount_prior(amounts: np.ndarray, scale: str = "linear") -> tuple[float, float]:
    """The population's centre (median) and spread (a robust standard deviation: 1.4826 times the
    median absolute deviation) of the amount on `scale`: what a new entity is compared with."""
    x = amounts[np.isfinite(amounts)]
    x = x if scale == "linear" else signed_log(x)
    if x.size == 0:
        return 0.0, 1.0
    centre = float(np.median(x))
    spread = float(1.4826 * np.median(np.abs(x - centre)))
    return centre, max(spread, MIN_SPREAD * max(abs(centre), 1.0) if scale == "linear" else MIN_SPREAD)
