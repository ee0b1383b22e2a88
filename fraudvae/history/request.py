"""A request's history features from its entities' stored states (both stores' arithmetic): `compute`
runs `derive` on a `HistoryState` holding just the request's entities, the same arithmetic as a
file, row for row; `redo` brings a computation made from one snapshot of the store up to a later one
by computing again only the rows a change reaches.

`redo` rests on how history works: an entity's state after a transaction depends only on its state
before and the transaction, and a row's features only on its entities' states as of its time (after
the request's earlier rows of the same entities) and the row itself. So when another worker changed
some of a request's entities meanwhile, the rows reached from them (the changed entities' rows, the
rows sharing another entity with those, and so on) are computed again from the new states, and the
others keep their features and their entities the states computed before. With one entity column
that is the changed entities' rows; with several it can be the whole request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np

from fraudvae import readers as read
from fraudvae.history import stored
from fraudvae.history.features import derive
from fraudvae.history.labels import tx_records
from fraudvae.history.spec import HistorySpec
from fraudvae.history.state import HistoryState, latest

# what a computation reads: entity column -> key -> stored JSON, the clock's start and end, and the
# features of the request's ids applied before
Snapshot: TypeAlias = tuple[dict[str, dict[str, "str | bytes"]], float, float, dict[str, list]]
# the features (rows in order), the state after the request, the rows applied (new ids, each once)
# and the transaction record of each new id (`fraudvae.history.labels`; a specification with labels)
Result: TypeAlias = tuple[dict[str, list[float | None]], HistoryState, list[int], dict[str, list]]


def compute(spec: HistorySpec, columns: Mapping[str, Sequence], n: int, ids: Sequence | None,
            load: Mapping[str, Mapping[str, str | bytes]], start: float, end: float, known: Mapping[str, list]
            ) -> Result:
    """The features of a request and the state after it: `load` holds the stored states of its
    entities (entity column -> key -> `stored` JSON), `known` the features of ids applied before. Returns
    the features (rows in order), the state to store back, which rows were applied (new ids,
    each once: an id twice in one request counts once) and, for a specification with labels, the
    transaction record (`fraudvae.history.labels`) of each new id, for labels posted later."""
    names = spec.names()
    fresh, first_of = [], {}
    for i in range(n):
        rid = None if ids is None or ids[i] is None else str(ids[i])
        if rid is not None and (rid in known or rid in first_of):
            continue
        if rid is not None:
            first_of[rid] = i
        fresh.append(i)
    state = HistoryState.empty(spec)
    state.start, state.end = start, end
    for e, texts in load.items():
        stored.load(state.tables[e], texts)
    wanted = spec.columns() + [c for c in spec.optional_columns() if c in columns]
    sub = {c: [columns[c][i] for i in fresh] for c in wanted}
    feats = derive(spec, sub, state, typed=True) if fresh else {name: np.zeros(0) for name in names}
    records = tx_records(spec, sub, [ids[i] for i in fresh]) if spec.risk_windows and ids is not None and fresh \
        else {}
    out: dict[str, list[float | None]] = {}
    for name in names:  # a gap (NaN) as None, column by column
        f = feats[name]
        values: list[float | None] = list(f.tolist())
        if not np.isfinite(f).all():
            values = [v if v is not None and math.isfinite(v) else None for v in values]
        if len(fresh) == n:
            out[name] = values
        else:
            out[name] = [None] * n
            for j, i in enumerate(fresh):
                out[name][i] = values[j]
    applied = set(fresh)
    for i in range(n):
        rid = None if ids is None or ids[i] is None else str(ids[i])
        if rid is None or i in applied:
            continue
        values = known[rid] if rid in known else [out[name][first_of[rid]] for name in names]
        for name, v in zip(names, values, strict=True):
            out[name][i] = v
    return out, state, fresh, records


def request_keys(spec: HistorySpec, columns: Mapping[str, Sequence]) -> dict[str, list[str]]:
    """The distinct entity keys of a request, per entity column."""
    return {e: sorted({k for k in read.keys(list(columns[e]), e, typed=True) if k is not None})
            for e in spec.entities}


def same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def unchanged(spec: HistorySpec, before: Snapshot, now: Snapshot) -> bool:
    """Whether a computation from `before` is the one from `now`: the same states, ids and start
    (where the windows' coverage begins) and, with labels, the same end (which labels are due)."""
    return (before[0] == now[0] and before[3].keys() == now[3].keys() and same_float(before[1], now[1])
            and (not spec.risk_windows or same_float(before[2], now[2])))


def redo(spec: HistorySpec, columns: Mapping[str, Sequence], n: int, ids: Sequence | None, before: Snapshot,
         now: Snapshot, done: Result) -> tuple[Result, int]:
    """`done`, computed from `before`, as `compute` from `now` gives it, and how many rows were
    computed again: none when nothing the computation read changed (`unchanged`: `done` as it is),
    else those a change of an entity's stored state between the two reaches (see the module's
    docstring). The whole request is computed again when what changed reaches every row: other ids,
    the clock's start (or, with labels, its end), or an id given twice in the request."""
    if unchanged(spec, before, now):
        return done, 0
    given = [str(i) for i in ids if i is not None] if ids is not None else []
    if (before[3].keys() != now[3].keys() or not same_float(before[1], now[1]) or not math.isfinite(now[1])
            or (spec.risk_windows and not same_float(before[2], now[2])) or len(set(given)) != len(given)):
        return compute(spec, columns, n, ids, *now), n
    changed = {e: {k for k in was.keys() | now[0][e].keys() if was.get(k) != now[0][e].get(k)}
               for e, was in before[0].items()}
    keys = {e: read.keys(list(columns[e]), e, typed=True) for e in spec.entities}
    rows = _reached(spec, keys, n, changed)
    if len(rows) == n:
        return compute(spec, columns, n, ids, *now), n
    out, state, fresh, records = done
    state.end = latest(state.end, now[2])  # the clock as `compute` from `now` leaves it
    if not rows:
        return done, 0
    sub = {c: [columns[c][i] for i in rows] for c in columns}
    load = {e: {k: now[0][e][k] for k in {keys[e][i] for i in rows} if k in now[0][e]} for e in spec.entities}
    # the end this request's rows bring the clock to, so that labels fall due as for the whole request
    again, new, applied, new_records = compute(spec, sub, len(rows), None if ids is None else [ids[i] for i in rows],
                                               load, now[1], state.end, now[3])
    for name, values in again.items():
        column = out[name]
        for j, i in enumerate(rows):
            column[i] = values[j]
    redone = set(rows)
    fresh = sorted({i for i in fresh if i not in redone} | {rows[j] for j in applied})
    gone = {str(ids[i]) for i in rows if ids[i] is not None} if ids is not None else set()
    records = {k: r for k, r in records.items() if k not in gone} | new_records
    for e in spec.entities:
        table, other = state.tables[e], new.tables[e]
        for k in {k for k in (keys[e][i] for i in rows) if k is not None}:
            s = other.get(k)
            if s is not None:
                table.put(k, s)
    return (out, state, fresh, records), len(rows)


def _reached(spec: HistorySpec, keys: Mapping[str, Sequence[str | None]], n: int,
             changed: Mapping[str, set[str]]) -> list[int]:
    """The rows whose features or entities' states a change of the `changed` entities reaches: the
    rows of a changed entity, and with them every row sharing another entity with one of those (its
    state runs through them all in time order), until no row outside shares an entity with one in."""
    reach = {e: set(ks) for e, ks in changed.items()}
    rows: set[int] = set()
    while True:
        more = [i for i in range(n) if i not in rows and any(keys[e][i] in reach[e] for e in spec.entities)]
        if not more:
            return sorted(rows)
        rows.update(more)
        for e in spec.entities:
            reach[e].update(k for k in (keys[e][i] for i in more) if k is not None)
