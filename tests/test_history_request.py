"""A request's features from stored states (`fraudvae.history.request`): computed from a snapshot
that another worker's request has since changed, then brought up to date by computing again only
the rows that change reaches, it equals the computation from the new snapshot."""

import math

import numpy as np
import pytest
from test_history_labels import DAY, terminals

from fraudvae.history import HistorySpec, HistoryState, derive, stored
from fraudvae.history.request import compute, redo, request_keys


def snapshot(state: HistoryState, keys: dict[str, list[str]], known: dict | None = None) -> tuple:
    texts = {e: {} for e in keys}
    for e, k, _, text in stored.dump(state, keys):
        texts[e][k] = text
    return texts, state.start, state.end, known or {}


def columns(df) -> dict[str, list]:
    out = {c: df[c].tolist() for c in df.columns}
    out["when"] = df["when"].dt.strftime("%Y-%m-%d %H:%M:%S").tolist()
    for e in ("terminal_id", "card_id"):
        out[e] = [int(v) for v in out[e]]
    return out


@pytest.mark.parametrize("labels", [False, True])
def test_a_request_brought_up_to_date_equals_one_computed_from_the_new_states(labels: bool) -> None:
    spec = HistorySpec(("terminal_id", "card_id"), "when", "amount", novelty=("card_id",), excess=True,
                       **({"label_column": "is_fraud", "label_delay": 2 * DAY, "label_windows": (7 * DAY,)}
                          if labels else {}))
    df = terminals(n=12, days=16)
    # two groups that share no entity: odd terminals with cards 10-19, even ones with cards 0-9
    df["card_id"] = df["card_id"] % 10 + 10 * (df["terminal_id"] % 2)
    t = (df["when"] - df["when"].min()).dt.total_seconds()
    # another worker's request, within the clock's span (with labels a later end would change every row)
    later = (t >= 13 * DAY) & (t < 14 * DAY) & df["terminal_id"].isin([1, 3])
    other = df[later]
    state = HistoryState.empty(spec)
    derive(spec, df[(t < 14 * DAY) & ~later], state)
    mine = df[t >= 15 * DAY].head(150)
    cols = columns(mine)
    ids = [f"r{i}" for i in range(len(mine))]
    keys = request_keys(spec, cols)
    before = snapshot(state, keys)
    after = HistoryState.empty(spec)
    after.start, after.end = state.start, state.end
    for e, texts in before[0].items():
        stored.load(after.tables[e], texts)
    for e in spec.entities:  # the other worker's entities too
        held = stored.dump(state, {e: list(state.tables[e].keys)})
        stored.load(after.tables[e], {k: text for _, k, _, text in held if k not in after.tables[e].index})
    derive(spec, columns(other), after, typed=True)
    now = snapshot(after, keys)
    done = compute(spec, cols, len(mine), ids, *before)
    want = compute(spec, cols, len(mine), ids, *now)
    stale = {name: list(values) for name, values in done[0].items()}
    got, again = redo(spec, cols, len(mine), ids, before, now, done)
    # the other request's terminals and cards are odd ones: only that group's rows were computed again
    assert 0 < again == int((mine["terminal_id"] % 2).sum()) < len(mine)
    assert got[0] == want[0]  # every row's features
    assert stale != want[0]  # (which the snapshot from before got wrong)
    assert got[2] == want[2] and got[3] == want[3]  # rows applied, transaction records
    assert got[1].end == want[1].end and got[1].start == want[1].start
    assert list(stored.dump(got[1], keys)) == list(stored.dump(want[1], keys))  # the states written back


def test_a_request_is_computed_again_whole_when_an_id_repeats_or_the_clock_started_elsewhere() -> None:
    spec = HistorySpec(("terminal_id",), "when", "amount", excess=True)
    df = terminals(n=6, days=4)
    t = (df["when"] - df["when"].min()).dt.total_seconds().to_numpy()
    state = HistoryState.empty(spec)
    derive(spec, df[t < 3 * DAY], state)
    mine = df[t >= 3 * DAY].head(40)
    cols = columns(mine)
    keys = request_keys(spec, cols)
    before = snapshot(state, keys)
    changed = dict(before[0])
    changed["terminal_id"] = {**changed["terminal_id"], "0": changed["terminal_id"]["1"]}
    now = (changed, *before[1:])
    ids = [f"r{i}" for i in range(len(mine))]
    done = compute(spec, cols, len(mine), ids, *before)
    assert redo(spec, cols, len(mine), ids, before, before, done) == (done, 0)  # nothing changed: as it was
    assert redo(spec, cols, len(mine), ids, before, now, done)[1] < len(mine)
    twice = [*ids[:-1], ids[0]]
    assert redo(spec, cols, len(mine), twice, before, now, compute(spec, cols, len(mine), twice, *before))[1] \
        == len(mine)
    moved = (changed, before[1] - 1.0, *before[2:])
    assert redo(spec, cols, len(mine), ids, before, moved, done)[1] == len(mine)
    assert redo(spec, cols, len(mine), ids, before, moved, done)[0][0] == compute(spec, cols, len(mine), ids,
                                                                                  *moved)[0]


def test_the_clocks_earliest_and_latest_time_ignore_a_clock_not_started():
    from fraudvae.history.state import earliest, latest

    nan = float("nan")
    assert (earliest(3.0, 5.0), latest(3.0, 5.0), earliest(5.0, 3.0), latest(5.0, 3.0)) == (3.0, 5.0, 3.0, 5.0)
    assert (earliest(nan, 5.0), latest(nan, 5.0), earliest(5.0, nan), latest(5.0, nan)) == (5.0, 5.0, 5.0, 5.0)
    assert all(map(math.isnan, (earliest(nan, nan), latest(nan, nan))))
    assert type(latest(1.0, np.float64(2.0))) is float
