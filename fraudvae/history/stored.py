"""An entity's state as the stores keep it: one JSON array per entity,
``[last, counts, amount, seen]`` and, for a specification with labels, ``risk, risk_at, pending``
(`EntityState`'s fields in order). A request reads and writes a hundred of them at a time, so they
go to and from a table's arrays in bulk (`load`, `dump`); `entity_json` and `entity_from_json`
are the same form one `EntityState` at a time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from fraudvae.history.state import EntityState, EntityTable, HistoryState

try:  # the service's JSON library when installed (a state is read and written per transaction: 10x faster)
    import msgspec

    to_json: Callable[[object], str | bytes] = msgspec.json.Encoder().encode
    from_json: Callable[[str | bytes], Any] = msgspec.json.Decoder().decode
except ImportError:  # pragma: no cover (the service extra brings it; the library alone has json)
    to_json, from_json = partial(json.dumps, separators=(",", ":")), json.loads


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def entity_json(s: EntityState) -> str | bytes:
    """A state as JSON text (its values are finite: a stored state has seen a transaction; a time
    no label has set yet is null). Confirmed frauds only for a specification with labels."""
    base = [s.last, s.counts, s.amount, s.seen]
    if s.risk:
        base += [s.risk, finite(s.risk_at), s.pending]
    return to_json(base)


def entity_from_json(text: str | bytes) -> EntityState:
    last, counts, amount, seen, *risk = from_json(text)
    state = EntityState(float(last), tuple(counts), tuple(tuple(a) for a in amount), tuple(tuple(v) for v in seen))
    if risk:
        fraud, at, pending = risk
        state = replace(state, risk=tuple((float(f), float(n)) for f, n in fraud),
                        risk_at=float("nan") if at is None else float(at),
                        pending=tuple((float(a), float(y), float(c)) for a, y, c in pending))
    return state


def with_pending(s: EntityState, items: Sequence[tuple[float, float, float]]) -> EntityState:
    """An entity's state with more pending labels, in time order."""
    return replace(s, pending=tuple(sorted((*s.pending, *items), key=lambda p: p[0])))


def load(table: EntityTable, texts: Mapping[str, str | bytes]) -> None:
    """Put stored states (key -> JSON) into `table`, those of keys it does not hold yet, through
    `EntityTable.put_many` (which grows the arrays once), field by field as JSON decodes them: no
    `EntityState` per entity (a state stored before labels existed has none of their fields)."""
    new = {k: from_json(v) for k, v in texts.items() if k not in table.index}
    if not new:
        return
    states = list(new.values())
    labelled: tuple[list, ...] = ()
    if table.risk.shape[1]:
        none = [(0.0, 0.0)] * table.risk.shape[1]
        labelled = ([d[4] if len(d) > 4 and d[4] else none for d in states],
                    [float("nan") if len(d) <= 4 or d[5] is None else float(d[5]) for d in states],
                    [d[6] if len(d) > 4 else [] for d in states])
    table.put_many(list(new), [d[0] for d in states], [d[1] for d in states], [d[2] for d in states],
                   [d[3] for d in states], *labelled)


def dump(state: HistoryState, keys: Mapping[str, Sequence[str]]) -> Iterator[tuple[str, str, float, str | bytes]]:
    """(entity column, key, last, JSON) of `keys` (each column's) held in `state`, to write back to
    a store: `entity_json` of `EntityTable.get`, from the arrays at once."""
    for e, ks in keys.items():
        table = state.tables[e]
        held = [k for k in ks if k in table.index]
        if not held:
            continue
        rows = table.rows(held)
        last, counts, amount = table.last[rows].tolist(), table.counts[rows].tolist(), table.amount[rows].tolist()
        seen = [[list(col[i]) for col in table.seen] for i in rows.tolist()]
        risky = bool(table.risk.shape[1])
        if risky:
            risk, at, waiting = table.risk[rows].tolist(), table.risk_at[rows].tolist(), table.pending.by_key()
        for j, k in enumerate(held):
            base = [last[j], counts[j], amount[j], seen[j]]
            if risky:
                base += [risk[j], finite(at[j]), waiting.get(k, [])]
            yield e, k, last[j], to_json(base)
