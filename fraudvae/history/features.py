"""History features: each transaction against its entities' strictly earlier transactions.

Rows are taken in time order (equal times in input order); each row's features are computed from
its entities' states before the row is applied to them, so a row never sees itself or anything
after it. Entities are independent, so the rows are applied in rounds (every entity's first
transaction of the batch, then every entity's second, ...), each round one vectorised step over
the entities in it: the arithmetic a row gets is the same whether it comes alone (the service),
in a chunk or in a whole file.

Per entity column E and row:
- ``E: tx in W``: the entity's earlier transactions, each weighted e^(-age / W) (an estimate of
  the number in the last W; 0 for a first transaction), divided by the share of a full window the
  history covers so far (1 - e^(-history's age / W), at least 0.1): a 30-day count on the history's
  tenth day means what it will mean a year later;
- ``E: hours since previous``: gap for a first transaction;
- ``E: amount vs W usual`` (W `HistorySpec.usual_window`, with an amount column and a window of 7 days
  or more): the row's amount minus the entity's usual, in spreads (so 3 means the same for a 5-euro
  and a 500-euro card). The usual is the decayed mean and spread of the entity's earlier amounts, each clipped to
  2 spreads of the usual before its time's transactions (a run of frauds on a card moves it
  little, and what transactions at one time leave is the same in any order: decayed sums are
  order-free), shrunk towards the population's median and spread with the weight of
  `HistorySpec.prior_weight` transactions (1; 3 in models saved before it);
- ``E: new C``: 1 when the row's value of column C was not among the entity's recent distinct
  values (at most 64, the most recent kept), else 0.
These are the raw features, which models saved before `HistorySpec.excess` keep. Models fitted since
read what is beyond the ordinary (`_beyond_ordinary`): ``E: tx in W above pace`` for each window
but the longest, ``E: amount beyond W usual`` and the novelty flags; no pace, no time since the
previous transaction.
An entity's first transaction has no history to be compared with: its features for that entity
are gaps, which say nothing (unless training had such gaps, when they cost what they cost there),
so a new card is judged on the row's own columns: never certain fraud for being new, and a fraud
on it still shows in its amount, merchant and time. Its transaction starts the entity's history.
A row whose entity is missing gets gaps for that entity's features and changes no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import NamedTuple, TypeAlias

import numpy as np
import pandas as pd

from fraudvae import readers as read
from fraudvae.errors import SchemaError
from fraudvae.history.risk import labels_of, risk
from fraudvae.history.spec import (
    CLIP,
    MIN_COVER,
    MIN_SPREAD,
    ORDINARY,
    HistorySpec,
    window_label,
)
from fraudvae.history.state import (
    REF_CENTRE,
    REF_SPREAD,
    SQUARES,
    TOTAL,
    WEIGHT,
    EntityTable,
    HistoryState,
    earliest,
    latest,
)
from fraudvae.schema import where
from fraudvae.specs import TimeSpec
from fraudvae.values import ISO_SECONDS, iso_seconds, json_datetimes

Data: TypeAlias = pd.DataFrame | Mapping[str, Sequence]


def seconds(spec: HistorySpec, data: Data, typed: bool = False) -> np.ndarray:
    """Each row's time in seconds, read as the model reads its time column; a gap is refused
    (every transaction needs a time to be placed in its entities' histories)."""
    name = spec.time_column
    values = data[name] if not typed else list(data[name])
    if typed and spec.time_format is not None:
        fast = _strptime(values, spec.time_format)
        if fast is not None:
            return fast
    t = read.times(values, name, TimeSpec(spec.time_unit, spec.time_format, (), (), False), typed=typed)
    gap = t.isna().to_numpy()
    if gap.any():
        i = int(np.flatnonzero(gap)[0])
        place, row = (where(values, i), values.index[i]) if isinstance(values, pd.Series) else (f"record {i}", i)
        raise SchemaError(f"time column {name!r} has no time at {place}: every transaction needs one to be placed "
                          f"in its entities' histories", row=row, column=name)
    return read.epoch_seconds(t)


EPOCH = datetime(1970, 1, 1)
MICROSECOND = timedelta(microseconds=1)
NS_LIMIT = np.iinfo(np.int64).max // 1_000_000_000  # seconds whose nanoseconds an int64 holds (1678 to 2262)


def _strptime(values: Sequence, fmt: str) -> np.ndarray | None:
    """Seconds of a request's time strings (`json_datetimes`); None when one is not such a string
    or is a gap (the general reader then names it)."""
    at_once = iso_seconds(values) if fmt == ISO_SECONDS else None
    if at_once is not None and (np.abs(at_once) < NS_LIMIT).all():  # nanoseconds / 1e9, as files are read
        return (at_once * 1_000_000_000) / 1e9
    times = json_datetimes(values, fmt)
    if times is None or any(t is None for t in times):
        return None
    return np.array([((t - EPOCH) // MICROSECOND * 1000) / 1e9 for t in times if t is not None])


def derive(spec: HistorySpec, data: Data, state: HistoryState, typed: bool = False,
           fit_chance: bool = False) -> dict[str, np.ndarray]:
    """The history features of the rows of `data` (a frame, or columns of JSON values with `typed`),
    in their input order, as `spec.names()` -> (n,) float arrays; `state` is advanced through them
    (pass a copy to leave it as it was). With `fit_chance` (fitting), the share of amounts beyond
    their entity's usual in these rows becomes `by_chance` first, and `state.spec` the specification
    with it (the state itself does not depend on it). Raises `SchemaError` for a missing or bad time
    column."""
    missing = [c for c in spec.columns() if c not in data]
    if missing:
        raise SchemaError(f"missing column(s) the model's history needs: {', '.join(map(repr, missing))}",
                          column=missing[0])
    t = seconds(spec, data, typed)
    n = len(t)
    x = None
    if spec.amount_column is not None:
        values = data[spec.amount_column] if not typed else list(data[spec.amount_column])
        x = spec.on_scale(read.numbers(values, spec.amount_column, spec.decimal, typed=typed))
    keys = {c: _keys(data, c, typed) for c in dict.fromkeys((*spec.entities, *spec.novelty))}
    order = np.argsort(t, kind="stable")
    out: dict[str, np.ndarray] = {}
    if n and not np.isfinite(state.start):
        state.start = float(t.min())
    raw = {e: _entity(spec, e, state.tables[e], t, x, keys, order, n, state.start) for e in spec.entities}
    if fit_chance and spec.run_window is not None:  # what share of amounts lies beyond the usual by chance, here
        z = np.concatenate([r.z[:, -1] for r in raw.values()])
        z = z[np.isfinite(z)]
        if z.size:
            spec = state.spec = replace(spec, by_chance=float(np.mean(z > ORDINARY)))
    for e, r in raw.items():
        out.update(_beyond_ordinary(spec, e, r) if spec.excess else _raw(spec, e, r))
    end = latest(state.end, t.max()) if n else state.end  # the clock after these rows
    if spec.risk_windows and n:  # confirmed frauds: labels known before each row, the rest left pending
        y, known = labels_of(spec, data, t, typed)
        for e in spec.entities:
            out.update(risk(spec, e, state.tables[e], t, keys[e], y, known, end))
    elif spec.risk_windows:
        out.update({name: np.zeros(0) for name in spec.names()})
    if n:
        state.end = end
        state.start = earliest(state.start, t.min())
    return {name: out[name] for name in spec.names()}


def _keys(data: Data, column: str, typed: bool) -> list[str | None]:
    values = data[column] if not typed else list(data[column])
    k = read.keys(values, column, typed=typed)
    return list(k) if isinstance(k, list) else k.tolist()


def _entity(spec: HistorySpec, e: str, table: EntityTable, t: np.ndarray, x: np.ndarray | None,
            keys: dict[str, list[str | None]], order: np.ndarray, n: int, start: float) -> Raw:
    windows, long = np.asarray(spec.count_windows), np.asarray(spec.long_windows)
    run = spec.run_window is not None  # the last count is the run window's amounts beyond the usual
    novelty = spec.novelty_of(e)
    counts = np.full((n, len(windows)), np.nan)
    since = np.full(n, np.nan)
    z = np.full((n, len(long)), np.nan)
    new = np.full((n, len(novelty)), np.nan)
    own = keys[e]
    present = np.fromiter((k is not None for k in own), dtype=bool, count=n)
    pos = order[present[order]]  # rows with an entity, in time order
    rows = table.rows([k for k in (own[i] for i in pos.tolist()) if k is not None])
    if len(pos):
        rank = _rank_within(rows)
        by_round = np.argsort(rank, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(rank))]
        c0, s0 = spec.amount_prior
        for r in range(len(bounds) - 1):
            sel = by_round[bounds[r]: bounds[r + 1]]  # one row of each entity in this round
            i, a = pos[sel], rows[sel]
            tt = t[i]
            last = table.last[a]
            first = np.isnan(last)
            dt = np.where(first, 0.0, np.maximum(tt - np.where(first, tt, last), 0.0))  # a late row: no decay
            now = table.counts[a] * np.exp(-dt[:, None] / windows)
            # a decayed count over a history `age` long holds 1 - e^(-age/W) of what a full one would:
            # corrected, a count means the same on the history's second day as on its hundredth
            age = np.maximum(tt - start, 0.0)[:, None]
            counts[i] = now / np.maximum(-np.expm1(-age / windows), MIN_COVER)
            since[i] = np.where(first, np.nan, dt / 3600.0)
            counts_after = now + 1.0
            table.last[a] = np.where(first, tt, np.fmax(last, tt))
            if len(long) and x is not None:
                st = table.amount[a]  # (rows, long windows, fields) as of `last`
                decay = np.exp(-dt[:, None] / long)
                w, total, squares = st[..., WEIGHT] * decay, st[..., TOTAL] * decay, st[..., SQUARES] * decay
                # the usual now: the decayed mean and spread, shrunk towards the population's
                weight = spec.prior_weight  # the population's usual, worth this many transactions
                centre = (total + weight * c0) / (w + weight)
                scatter = np.maximum(squares - total * total / np.maximum(w, 1e-300), 0.0)  # w times the variance
                floor = MIN_SPREAD * (np.abs(centre) if spec.scale == "linear" else 1.0)
                spread = np.sqrt(np.maximum((scatter + weight * s0 * s0) / (w + weight), floor * floor))
                xx = x[i][:, None]
                z[i] = (xx - centre) / spread
                # a transaction counts clipped to CLIP spreads of the usual before its time's transactions:
                # what transactions of one time leave behind is the same whichever came first
                group = (first | (tt > last))[:, None]
                ref_c = np.where(group, centre, st[..., REF_CENTRE])
                ref_s = np.where(group, spread, st[..., REF_SPREAD])
                clipped = ref_c + np.clip((xx - ref_c) / ref_s, -CLIP, CLIP) * ref_s
                ok = np.isfinite(xx)
                table.amount[a] = np.stack([w + ok, total + np.where(ok, clipped, 0.0),
                                            squares + np.where(ok, clipped * clipped, 0.0), ref_c, ref_s], axis=-1)
                if run:  # this amount joins the run when beyond the usual (a first one has no usual of its own),
                    # in new models the usual before its time's transactions, as its clipping: transactions of
                    # one time then leave the same run whichever came first (the service's concurrent requests)
                    judged = (xx - ref_c) / ref_s if spec.run_before_time else z[i]
                    counts_after[:, -1] = now[:, -1] + ((judged[:, -1] > ORDINARY) & ~first)
            table.counts[a] = counts_after
            for j, c in enumerate(novelty):
                _novelty(table, a, i, keys[c], new[:, j], j, spec.max_values)
            if first.any():  # no history to compare with: gaps, which say nothing (or what training's gaps cost)
                f = i[first]
                counts[f], since[f], z[f], new[f] = np.nan, np.nan, np.nan, np.nan
    return Raw(counts, since, z, new)


class Raw(NamedTuple):
    """An entity column's per-row history, before it becomes features: decayed counts per
    `HistorySpec.count_windows` (scaled up while the history is young), hours since the previous
    transaction, the amount's distance from the usual in spreads per long window, novelty flags."""

    counts: np.ndarray
    since: np.ndarray
    z: np.ndarray
    new: np.ndarray


def _raw(spec: HistorySpec, e: str, r: Raw) -> dict[str, np.ndarray]:
    """The features of models saved before `HistorySpec.excess`: the counts, the hours since the
    previous transaction, the distance from the usual and novelty, as they are."""
    names = [name for name, _ in spec.features() if name.startswith(f"{e}: ") and name not in spec.risk_names(e)]
    cols = [*r.counts.T, r.since, *r.z.T, *r.new.T]
    return dict(zip(names, cols, strict=True))


def _beyond_ordinary(spec: HistorySpec, e: str, r: Raw) -> dict[str, np.ndarray]:
    """The features of `HistorySpec.excess`, each 0 when nothing is out of the ordinary: each shorter
    window's count beyond what the entity's pace (its count in the longest window) leads one to expect
    there, less ORDINARY Poisson deviations of that; the amount's spreads beyond ORDINARY of the usual
    (signed); novelty as it is. The pace itself and the time since the previous transaction are no
    inputs: they say what kind of entity it is, not that anything happened, and as inputs they added
    noise to every row's score (bench/RESULTS.md)."""
    counts, z = r.counts, r.z
    windows = np.asarray(spec.windows)
    longest = counts[:, int(np.argmax(windows))]
    paced = [k for k, w in enumerate(spec.windows) if w in spec.paced]
    out = {name: _above(counts[:, k], longest * (windows[k] / windows.max()))
           for name, k in zip(spec.paced_names(e), paced, strict=True)}
    if len(windows) == 1:  # one window (`--windows 1h`): no pace to compare with, the count itself
        out[f"{e}: tx in {window_label(spec.windows[0])}"] = counts[:, 0]
    for k, name in enumerate(spec.amount_names(e)):
        out[name] = np.sign(z[:, k]) * np.maximum(np.abs(z[:, k]) - ORDINARY, 0.0)
    for name in spec.run_names(e):  # earlier amounts beyond the usual in the run window, beyond chance
        made = counts[:, spec.windows.index(spec.run_window)]  # (both counts scaled up alike while young)
        out[name] = _above(counts[:, -1], spec.by_chance * made)
    for k, c in enumerate(spec.novelty_of(e)):
        out[f"{e}: new {c}"] = r.new[:, k]
    return out


def _above(count: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """A count's excess over what was expected, less ORDINARY Poisson deviations of that (0 if none)."""
    return np.maximum(count - expected - ORDINARY * np.sqrt(expected + 1.0), 0.0)


def _rank_within(rows: np.ndarray) -> np.ndarray:
    """For rows in time order, each one's position among its entity's rows (0 for the first)."""
    if len(rows) < 2 or len(set(rows.tolist())) == len(rows):  # a request's rows are mostly one per entity
        return np.zeros(len(rows), dtype=np.int64)
    g = np.argsort(rows, kind="stable")
    sr = rows[g]
    start = np.r_[0, np.flatnonzero(np.diff(sr)) + 1]
    sizes = np.diff(np.r_[start, len(sr)])
    rank = np.empty(len(rows), dtype=np.int64)
    rank[g] = np.arange(len(sr)) - np.repeat(start, sizes)
    return rank


def _novelty(table: EntityTable, a: np.ndarray, i: np.ndarray, values: list[str | None], out: np.ndarray,
             j: int, most: int) -> None:
    """Whether each row's value is new to its entity (NaN for a gap); the value then becomes the
    entity's most recent one, the oldest forgotten beyond `most`. A set shared with a copy of the
    table is copied before it changes."""
    sets, shared = table.seen[j], table.shared[j]
    flags: list[float] = []
    for row, at in zip(a.tolist(), i.tolist(), strict=True):
        v = values[at]
        if v is None:
            flags.append(np.nan)
            continue
        seen = sets[row]
        if shared and row in shared:
            seen = sets[row] = dict(seen)
            shared.discard(row)
        if v in seen:
            flags.append(0.0)
            del seen[v]
        else:
            flags.append(1.0)
            if len(seen) >= most:
                del seen[next(iter(seen))]
        seen[v] = None
    out[i] = flags
