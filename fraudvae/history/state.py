"""Per-entity history: what is kept of each card's (customer's, terminal's) past, bounded whatever
its length, and its saved form (JSON: data, never code).

An entity's state is a small typed record (`EntityState`): the time of its latest transaction,
exponentially decayed transaction counts (one time constant per window: a count decays by e^-1
over its window, so it estimates the number of transactions in the window), per long window the
decayed weight, sum and sum of squares of its (clipped) amounts with the reference its amounts are
clipped against, and per novelty column its most recent
distinct values (at most `HistorySpec.max_values`). Decayed sums need O(1) memory per entity and
give the same numbers whichever way the transactions arrive in batches. A later field gets a
default, so states saved before it still load.

For batch work, all entities of one entity column live in an `EntityTable` (arrays, a row per
entity); `HistoryState` holds a table per entity column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fraudvae.history.spec import HistorySpec

FORMAT = "fraudvae-history/1"
AMOUNT_FIELDS = 5  # weight, sum, sum of squares, reference centre, reference spread
WEIGHT, TOTAL, SQUARES, REF_CENTRE, REF_SPREAD = range(AMOUNT_FIELDS)


@dataclass(frozen=True)
class EntityState:
    """One entity's history, as of its latest transaction `last` (seconds)."""

    last: float
    counts: tuple[float, ...]  # decayed transaction counts, one per window (`HistorySpec.count_windows`)
    # per long window: decayed weight, sum and sum of squares of the clipped amounts, and the centre and
    # spread they are clipped against (the usual before the latest time's transactions; see features)
    amount: tuple[tuple[float, ...], ...] = ()
    seen: tuple[tuple[str, ...], ...] = ()  # per novelty column: recent distinct values, oldest first
    # per risk window: decayed counts of confirmed frauds and of confirmed labels, as of `risk_at`
    risk: tuple[tuple[float, float], ...] = ()
    risk_at: float = float("nan")
    pending: tuple[tuple[float, float, float], ...] = ()  # labels not known yet: (at, label, count) each


class EntityTable:
    """Every entity of one entity column as arrays (a row per entity), grown as entities appear."""

    def __init__(self, windows: int, long: int, novelty: int, risk: int = 0) -> None:
        self.index: dict[str, int] = {}
        self.keys: list[str] = []
        self.last = np.full(0, np.nan)
        self.counts = np.zeros((0, windows))
        self.amount = np.zeros((0, long, AMOUNT_FIELDS))
        # per novelty column, per entity: its recent distinct values as an ordered set (a dict)
        self.seen: list[list[dict[str, None]]] = [[] for _ in range(novelty)]
        self.novelty = novelty
        # per novelty column: the rows whose set another table also holds (copied before a change)
        self.shared: list[set[int]] = [set() for _ in range(novelty)]
        # confirmed frauds (`fraudvae.history.risk`): per entity and risk window the decayed counts of
        # frauds and of labels known, as of `risk_at`; labels not known yet wait in `pending`
        self.risk = np.zeros((0, risk, 2))
        self.risk_at = np.full(0, np.nan)
        self.pending = Pending()

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, keys: list[str]) -> np.ndarray:
        """The row of each key (new keys get a fresh row: no history)."""
        index = self.index
        new = [k for k in dict.fromkeys(keys) if k not in index]
        if new:
            start = len(self.keys)
            for i, k in enumerate(new):
                index[k] = start + i
            self.keys += new
            self._grow(len(new))
        return np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))

    def _grow(self, n: int) -> None:
        self.last = np.concatenate([self.last, np.full(n, np.nan)])
        self.counts = np.concatenate([self.counts, np.zeros((n, self.counts.shape[1]))])
        self.amount = np.concatenate([self.amount, np.zeros((n, *self.amount.shape[1:]))])
        self.risk = np.concatenate([self.risk, np.zeros((n, *self.risk.shape[1:]))])
        self.risk_at = np.concatenate([self.risk_at, np.full(n, np.nan)])
        for col in self.seen:
            col += [{} for _ in range(n)]

    def copy(self) -> EntityTable:
        """An independent table: arrays copied, novelty sets shared until one side changes them."""
        other = EntityTable(self.counts.shape[1], self.amount.shape[1], self.novelty, self.risk.shape[1])
        other.index, other.keys = dict(self.index), list(self.keys)
        other.last, other.counts = self.last.copy(), self.counts.copy()
        other.amount = self.amount.copy()
        other.risk, other.risk_at, other.pending = self.risk.copy(), self.risk_at.copy(), self.pending.copy()
        other.seen = [list(col) for col in self.seen]
        everyone = range(len(self.keys))
        other.shared, self.shared = [set(everyone) for _ in self.seen], [set(everyone) for _ in self.seen]
        return other

    def get(self, key: str) -> EntityState | None:
        i = self.index.get(key)
        if i is None:
            return None
        waiting = self.pending.by_key().get(key, []) if self.risk.shape[1] else []
        return EntityState(float(self.last[i]), tuple(self.counts[i].tolist()),
                           tuple(tuple(a) for a in self.amount[i].tolist()), tuple(tuple(col[i]) for col in self.seen),
                           tuple((f, n) for f, n in self.risk[i].tolist()), float(self.risk_at[i]), tuple(waiting))

    def put(self, key: str, s: EntityState) -> None:
        i = int(self.rows([key])[0])
        self.last[i] = s.last
        self.counts[i] = s.counts
        if self.amount.shape[1]:
            self.amount[i] = s.amount
        if self.risk.shape[1]:
            self.risk[i], self.risk_at[i] = s.risk or 0.0, s.risk_at
            if key in self.pending.keys:  # its pending labels are the state's
                keep = [j for j, k in enumerate(self.pending.keys) if k != key]
                p = self.pending
                self.pending = Pending(p.at[keep], [p.keys[j] for j in keep], p.labels[keep], p.counts[keep])
            self.pending.add(key, s.pending)
        for j, col in enumerate(self.seen):
            col[i] = dict.fromkeys(s.seen[j]) if j < len(s.seen) else {}
            self.shared[j].discard(i)

    def put_many(self, keys: list[str], last: Sequence[float], counts: Sequence, amount: Sequence,
                 seen: Sequence[Sequence[Sequence[str]]], risk: Sequence = (), risk_at: Sequence[float] = (),
                 pending: Sequence[Sequence[Sequence[float]]] = ()) -> None:
        """Add entities the table does not hold yet, field by field (`EntityState`'s fields, one item
        per key; the confirmed-fraud ones for a table with labels), the arrays grown once: a request's
        states read from a store (`stored.load`)."""
        rows = self.rows(keys)
        if not len(rows):
            return
        self.last[rows] = last
        self.counts[rows] = counts
        if self.amount.shape[1]:
            self.amount[rows] = amount
        if self.risk.shape[1]:
            self.risk[rows] = risk
            self.risk_at[rows] = risk_at
            for k, p in zip(keys, pending, strict=True):
                self.pending.add(k, p)
        for j, col in enumerate(self.seen):
            for i, s in zip(rows.tolist(), seen, strict=True):
                col[i] = dict.fromkeys(s[j]) if j < len(s) else {}

    def keep(self, rows: np.ndarray) -> None:
        """Keep only `rows` (in that order)."""
        self.keys = [self.keys[i] for i in rows.tolist()]
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.last, self.counts = self.last[rows], self.counts[rows]
        self.amount = self.amount[rows]
        self.risk, self.risk_at = self.risk[rows], self.risk_at[rows]
        self.seen = [[col[i] for i in rows.tolist()] for col in self.seen]
        self.shared = [set(range(len(self.keys))) for _ in self.seen]

    def to_dict(self) -> dict:
        d: dict[str, object] = {"keys": self.keys, "last": self.last.tolist(), "counts": self.counts.tolist(),
             "amount": self.amount.tolist(),
             "seen": [[list(d) for d in col] for col in self.seen]}
        if self.risk.shape[1]:  # a table without labels is saved as before they existed
            d.update(risk=self.risk.tolist(), risk_at=[x if np.isfinite(x) else None for x in self.risk_at.tolist()],
                     pending=self.pending.to_dict())
        return d

    @classmethod
    def from_dict(cls, d: dict, windows: int, long: int, novelty: int, risk: int = 0) -> EntityTable:
        t = cls(windows, long, novelty, risk)
        n = len(d["keys"])
        t.keys = [str(k) for k in d["keys"]]
        t.index = {k: i for i, k in enumerate(t.keys)}
        t.shared = [set() for _ in range(novelty)]
        t.last = np.asarray(d["last"], dtype=np.float64).reshape(n)
        t.counts = np.asarray(d["counts"], dtype=np.float64).reshape(n, windows)
        t.amount = np.asarray(d["amount"], dtype=np.float64).reshape(n, long, AMOUNT_FIELDS)
        t.seen = [[dict.fromkeys(map(str, v)) for v in col] for col in d["seen"]]
        t.risk, t.risk_at = np.zeros((n, risk, 2)), np.full(n, np.nan)
        if risk:
            t.risk = np.asarray(d["risk"], dtype=np.float64).reshape(n, risk, 2)
            t.risk_at = np.array([np.nan if x is None else x for x in d["risk_at"]], dtype=np.float64).reshape(n)
            t.pending = Pending.from_dict(d["pending"])
        if len(t.seen) != novelty or any(len(col) != n for col in t.seen):
            raise ValueError("the saved history's novelty sets do not match its entities")
        return t


class Pending:
    """Labels of one entity column not known yet: when each becomes known (seconds), the entity's key,
    what it adds to the entity's frauds (1 or 0; a changed label: the change, +1 or -1) and to its
    labels known (1; 0 for a change). Bounded by the delay: a label leaves when the clock passes it."""

    def __init__(self, at: np.ndarray | None = None, keys: list[str] | None = None,
                 labels: np.ndarray | None = None, counts: np.ndarray | None = None) -> None:
        self.at = np.zeros(0) if at is None else at
        self.keys = [] if keys is None else keys
        self.labels = np.zeros(0) if labels is None else labels
        self.counts = np.ones(len(self.labels)) if counts is None else counts
        self._by_key: dict[str, list[tuple[float, float, float]]] | None = None  # `by_key`, until `add`

    def __len__(self) -> int:
        return len(self.keys)

    def copy(self) -> Pending:
        return Pending(self.at.copy(), list(self.keys), self.labels.copy(), self.counts.copy())

    def add(self, key: str, items: Sequence[Sequence[float]]) -> None:
        """Add an entity's pending labels, (at, label, count) each."""
        if items:
            a = np.asarray(items, dtype=np.float64).reshape(-1, 3)
            self.at, self.labels, self.counts = np.r_[self.at, a[:, 0]], np.r_[self.labels, a[:, 1]], \
                np.r_[self.counts, a[:, 2]]
            self.keys += [key] * len(a)
            self._by_key = None

    def by_key(self) -> dict[str, list[tuple[float, float, float]]]:
        """Each entity's pending labels, (at, label, count) in time order: sorted once, then kept
        until labels are added (reading every entity's state reads it once per entity)."""
        if self._by_key is None:
            self._by_key = {}
            for i in np.argsort(self.at, kind="stable").tolist():
                self._by_key.setdefault(self.keys[i], []).append(
                    (float(self.at[i]), float(self.labels[i]), float(self.counts[i])))
        return self._by_key

    def to_dict(self) -> dict:
        return {"at": self.at.tolist(), "keys": self.keys, "labels": self.labels.tolist(),
                "counts": self.counts.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Pending:
        p = cls(np.asarray(d["at"], dtype=np.float64), [str(k) for k in d["keys"]],
                np.asarray(d["labels"], dtype=np.float64),
                np.asarray(d["counts"], dtype=np.float64) if "counts" in d else None)
        if not (len(p.at) == len(p.keys) == len(p.labels) == len(p.counts) and np.isfinite(p.at).all()
                and np.isin(p.labels, (-1.0, 0.0, 1.0)).all() and np.isin(p.counts, (0.0, 1.0)).all()):
            raise ValueError("the saved history's pending labels are not times, keys, labels and counts of one length")
        return p


def earliest(a: float, b: float) -> float:
    """The earlier of two clock times, NaN meaning none (`numpy.nanmin` of the two, without its
    setup: a request reads and sets the clock a few times, one row or a thousand)."""
    return float(b if math.isnan(a) else a if math.isnan(b) else min(a, b))


def latest(a: float, b: float) -> float:
    """The later of two clock times, NaN meaning none (`numpy.nanmax` of the two)."""
    return float(b if math.isnan(a) else a if math.isnan(b) else max(a, b))


@dataclass
class HistoryState:
    """The state of every entity column of a `HistorySpec`, and the latest time it has seen."""

    spec: HistorySpec
    tables: dict[str, EntityTable] = field(default_factory=dict)
    end: float = float("nan")  # seconds of the latest transaction applied
    start: float = float("nan")  # and of the earliest: the history covers [start, end]

    @classmethod
    def empty(cls, spec: HistorySpec) -> HistoryState:
        return cls(spec, {e: EntityTable(len(spec.count_windows), len(spec.long_windows), len(spec.novelty_of(e)),
                                         len(spec.risk_windows)) for e in spec.entities})

    def copy(self) -> HistoryState:
        return HistoryState(self.spec, {e: t.copy() for e, t in self.tables.items()}, self.end, self.start)

    def entities(self) -> dict[str, int]:
        return {e: len(t) for e, t in self.tables.items()}

    def prune(self, horizon: float) -> int:
        """Forget entities whose latest transaction is more than `horizon` seconds before `end`
        (their counts have decayed to nothing; a later transaction starts them afresh). Returns how
        many were forgotten."""
        gone = 0
        if not np.isfinite(self.end):
            return 0
        for t in self.tables.values():
            alive = np.flatnonzero(t.last >= self.end - horizon)
            gone += len(t) - len(alive)
            if len(alive) < len(t):
                t.keep(alive)
        return gone

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, "spec_key": self.spec.key(),
                           "end": self.end if np.isfinite(self.end) else None,
                           "start": self.start if np.isfinite(self.start) else None,
                           "tables": {e: t.to_dict() for e, t in self.tables.items()}},
                          separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes, spec: HistorySpec) -> HistoryState:
        """Raises `ValueError` or `KeyError` for a state that is not this specification's."""
        d = json.loads(data)
        if d.get("format") != FORMAT:
            raise ValueError(f"the saved history is not {FORMAT}")
        if d["spec_key"] != spec.key():
            raise ValueError("the saved history belongs to another history specification")
        tables = {e: EntityTable.from_dict(d["tables"][e], len(spec.count_windows), len(spec.long_windows),
                                           len(spec.novelty_of(e)), len(spec.risk_windows)) for e in spec.entities}
        for t in tables.values():
            if not (np.isfinite(t.counts).all() and np.isfinite(t.amount).all() and np.isfinite(t.risk).all()):
                raise ValueError("the saved history holds a number that is not finite")
        return cls(spec, tables, float("nan") if d["end"] is None else float(d["end"]),
                   float("nan") if d.get("start") is None else float(d["start"]))
