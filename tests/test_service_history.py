"""History features in the service: the state stores (embedded SQLite, real Redis), online equal to
offline, no lost update across workers, retries counted once, a store that fails answered 503."""

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from test_history import START, cards
from test_service_process import Server, free_port

from fraudvae import FraudVAE
from fraudvae_service.app import create_app, state_home
from fraudvae_service.settings import Settings


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = cards(n_cards=30, days=18)
    when = pd.to_datetime(data["when"])
    return data[when < START + pd.Timedelta(days=15)], data[when >= START + pd.Timedelta(days=15)].drop(
        columns="planted")


@pytest.fixture(scope="module")
def model(split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, _ = split
    det = FraudVAE(id_column="tx", entity_columns=("card_id",), drop=("planted",), epochs=8, seed=0).fit(train)
    return det.save(tmp_path_factory.mktemp("hist") / "m")


def records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records"))


def replay(client, rows: list[dict], batch: int) -> np.ndarray:
    got = []
    for i in range(0, len(rows), batch):
        r = client.post("/score", json={"transactions": rows[i: i + batch]})
        assert r.status_code == 200, r.text
        got += [x["score"] for x in r.json()["results"]]
    return np.array(got)


@pytest.mark.parametrize("batch", [1, 17])
def test_online_equals_offline_on_the_embedded_store(model: Path, split, tmp_path: Path, batch: int) -> None:
    _, test = split
    want = FraudVAE.load(model).score_samples(test)
    with TestClient(create_app(Settings(model=model, state_dir=tmp_path / "state"))) as c:
        np.testing.assert_allclose(replay(c, records(test), batch), want, rtol=1e-12)
        assert (tmp_path / "state" / "history.sqlite3").exists() and not list(model.glob("*.sqlite3"))
        r = c.post("/score?explain=true", json={"transactions": records(test.tail(3))})
        metrics = c.get("/metrics").text
        assert r.status_code == 200 and "fraudvae_state_store_seconds_count" in metrics
        assert _eventually(lambda: "fraudvae_state_store_entities 30.0" in c.get("/metrics").text)
        assert "fraudvae_state_store_rows_recomputed_total 0.0" in metrics  # one client: nothing overtaken


def test_a_retried_transaction_gets_its_answer_and_counts_once(model: Path, split, tmp_path: Path) -> None:
    _, test = split
    card = test[test["card_id"] == test["card_id"].iloc[0]].head(3)
    rows = records(card)
    want = FraudVAE.load(model).score_samples(card)
    with TestClient(create_app(Settings(model=model, state_dir=tmp_path / "state"))) as c:
        first = replay(c, rows[:2], 1)
        again = replay(c, rows[1:2] + rows[:1], 1)  # retried, in another order
        np.testing.assert_array_equal(again, first[::-1])
        np.testing.assert_allclose(replay(c, rows[2:], 1), want[2:], rtol=1e-12)  # counted once each
        twice = replay(c, [rows[2], rows[2]], 2)  # one id twice in a request: one transaction
        assert twice[0] == twice[1] == pytest.approx(want[2], rel=1e-12)


def test_a_model_with_history_is_never_scored_without_it(model: Path, split) -> None:
    _, test = split
    det = FraudVAE.load(model)
    with pytest.raises(Exception, match="history"):
        det.encode_columns({c: list(test[c]) for c in test.columns}, len(test))


def test_the_state_folder_is_the_users_not_the_models(model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_home() == tmp_path / "xdg" / "fraudvae"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.chdir(tmp_path)
    assert state_home() == tmp_path / ".fraudvae-state"
    with pytest.raises(Exception, match="inside the model directory"), \
            TestClient(create_app(Settings(model=model, state_dir=model / "state"))):
        pass


def test_two_workers_lose_no_update_for_one_card(model: Path, tmp_path: Path) -> None:
    port = free_port()
    srv = Server([sys.executable, "-m", "fraudvae", "serve", "--model", str(model), "--port", str(port),
                  "--workers", "2"], port, env={"FRAUDVAE_STATE_DIR": str(tmp_path / "state")})
    try:
        srv.wait_ready()
        times = ["2024-03-16 12:00:00"] * 60 + ["2024-03-16 12:30:00"]
        # amounts from ordinary to far beyond the card's usual, all at one time: the state they leave
        # (the run of amounts beyond the usual included) must not depend on the order they arrive in
        rows = [{"tx": f"new{i}", "card_id": 424242, "when": w, "amount": 5.0 + 6.5 * i, "merchant": "m1"}
                for i, w in enumerate(times)]
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda r: httpx.post(srv.url + "/score", json={"transactions": [r]},
                                                       timeout=30).status_code, rows[:60]))
        assert codes == [200] * 60
        last = httpx.post(srv.url + "/score", json={"transactions": [rows[60]]}, timeout=30).json()["results"][0]
        want = FraudVAE.load(model).score_samples(pd.DataFrame(rows))[-1]  # all 60 counted before it
        assert last["score"] == pytest.approx(want, rel=1e-9)
    finally:
        srv.stop()


@pytest.fixture
def redis_server(tmp_path: Path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    port = free_port()

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            try:
                import redis

                redis.Redis(port=port).ping()
                return proc
            except Exception:
                time.sleep(0.1)
        raise AssertionError("redis-server did not start")

    server = {"proc": start(), "port": port, "start": start}
    yield server
    server["proc"].terminate()
    server["proc"].wait(10)


def test_redis_online_equals_offline_and_a_stopped_redis_is_a_503(model: Path, split, redis_server, caplog) -> None:
    _, test = split
    want = FraudVAE.load(model).score_samples(test)
    rows = records(test)
    url = f"redis://127.0.0.1:{redis_server['port']}/0"
    with TestClient(create_app(Settings(model=model, state_url=url))) as c:
        half = len(rows) // 2
        np.testing.assert_allclose(replay(c, rows[:half], 7), want[:half], rtol=1e-12)
        # the entities held, counted in the background: the 30 cards, not every key (ids, records)
        assert _eventually(lambda: "fraudvae_state_store_entities 30.0" in c.get("/metrics").text)
        redis_server["proc"].terminate()
        redis_server["proc"].wait(10)
        r = c.post("/score", json={"transactions": rows[half: half + 1]})
        assert r.status_code == 503 and r.headers["retry-after"] and "state store" in r.json()["error"]["message"]
        assert c.get("/readyz").status_code == 503
        redis_server["proc"] = redis_server["start"]()  # back, empty: noticed and seeded again
        assert c.get("/readyz").status_code == 200
        r = c.post("/score", json={"transactions": rows[:1]})
        assert r.status_code == 200 and r.json()["results"][0]["score"] == pytest.approx(want[0], rel=1e-12)
        assert "fraudvae_state_store_reseeds_total 1.0" in c.get("/metrics").text
        assert "seeded again" in caplog.text


def test_a_shadow_reads_the_champions_history_and_never_writes_it(model: Path, split, tmp_path: Path) -> None:
    train, test = split
    twin = FraudVAE(id_column="tx", entity_columns=("card_id",), drop=("planted",), epochs=4, seed=1).fit(train)
    twin.save(tmp_path / "twin")
    other = FraudVAE(id_column="tx", entity_columns=("card_id",), drop=("planted",), epochs=2, seed=1,
                     windows=("1h", "7d")).fit(train)
    other.save(tmp_path / "other")
    want = FraudVAE.load(model).score_samples(test)
    with TestClient(create_app(Settings(model=model, state_dir=tmp_path / "s", shadow_model=tmp_path / "twin"))) as c:
        np.testing.assert_allclose(replay(c, records(test), 50), want, rtol=1e-12)  # the champion's state, once
        for _ in range(50):
            if c.get("/monitor").json()["shadow"]["rows"] == len(test):
                break
            time.sleep(0.1)
        assert c.get("/monitor").json()["shadow"]["rows"] == len(test)
    with pytest.raises(Exception, match="entity history"), \
            TestClient(create_app(Settings(model=model, state_dir=tmp_path / "s2", shadow_model=tmp_path / "other"))):
        pass


def test_concurrent_requests_share_store_calls_and_a_bad_one_fails_alone(model: Path, split, tmp_path: Path) -> None:
    import asyncio

    from fraudvae import DataError, open_state_store
    from fraudvae_service.history import StoreQueue
    from fraudvae_service.schemas import RequestDecoder

    _, test = split
    det = FraudVAE.load(model)
    rows = records(test.head(40))
    bad = dict(rows[5], when="not a time", tx="bad")
    bodies = [[r] for r in rows[:20]] + [[bad]] + [rows[20:40]]
    decoder = RequestDecoder(det, 1000)
    calls: list[bool] = []
    store = open_state_store(det.history_.spec, det.history_, folder=tmp_path / "state")

    async def run(queue: StoreQueue, requests: list[list[dict]]) -> list:
        return await asyncio.gather(*(queue.apply(decoder.decode(json.dumps({"transactions": b}).encode()))
                                      for b in requests), return_exceptions=True)

    async def both() -> list:
        queue = StoreQueue(store, 4096, lambda seconds, failed, redone: calls.append(failed))
        first = await run(queue, bodies[:20])  # twenty single-row requests at once: one store call
        assert calls == [False]
        second = await run(queue, bodies[20:])  # a bad one among them: refused together, then one by one
        assert calls == [False, True, True, False]
        await queue.stop()
        return first + second

    out = asyncio.run(both())
    assert isinstance(out[20], DataError) and "when" in str(out[20])
    got = {name: sum((o[name] for i, o in enumerate(out) if i != 20), []) for name in det.history_.spec.names()}
    again = open_state_store(det.history_.spec, det.history_, folder=tmp_path / "fresh").apply(
        {c: [r.get(c) for r in rows] for c in rows[0]}, len(rows), [r["tx"] for r in rows])
    for name in got:  # the combined calls equal one call of all the good rows in order
        np.testing.assert_allclose(np.array(got[name], float), np.array(again[name], float), rtol=1e-12)


def _stream_small_requests(url: str, history, cards_: list[str], stop, sent) -> None:
    from fraudvae.history.redis_store import RedisStore

    store, k = RedisStore(url, history.spec, history), 0
    while not stop.is_set():
        cols, ids = _same_time_rows(cards_, 5, f"s{k}")
        store.apply(cols, 5, ids)
        with sent.get_lock():
            sent.value += 5
        k += 1


def _same_time_rows(cards_: list[str], n: int, tag: str) -> tuple[dict[str, list], list[str]]:
    return ({"card_id": [cards_[i % len(cards_)] for i in range(n)], "when": ["2024-06-01 12:00:00"] * n,
             "amount": [10.0 + i % 7 for i in range(n)], "merchant": ["m1"] * n}, [f"{tag}-{i}" for i in range(n)])


def test_redis_serves_a_large_request_among_a_stream_of_small_ones_and_loses_no_update(model: Path, redis_server
                                                                                        ) -> None:
    """Two workers (two processes) on the same cards: one posts a steady stream of 5-row requests,
    the other 800-row ones, which the stream used to starve (50 lost optimistic tries, a 503). Every
    request commits and every transaction counts once: all share one timestamp, so each card's
    count in the shortest window is exactly its number of transactions."""
    import multiprocessing

    from fraudvae.history.redis_store import RedisStore
    from fraudvae.history.stored import entity_from_json

    det = FraudVAE.load(model)
    url = f"redis://127.0.0.1:{redis_server['port']}/0"
    large = RedisStore(url, det.history_.spec, det.history_)
    cards_ = [f"c{i}" for i in range(20)]
    ctx = multiprocessing.get_context("fork")
    stop, sent = ctx.Event(), ctx.Value("q", 0)
    other = ctx.Process(target=_stream_small_requests, args=(url, det.history_, cards_, stop, sent))
    other.start()
    try:
        while sent.value < 50:  # the stream is running
            time.sleep(0.01)
        for k in range(3):
            cols, ids = _same_time_rows(cards_, 800, f"L{k}")
            large.apply(cols, 800, ids)
    finally:
        stop.set()
        other.join(30)
    assert other.exitcode == 0
    counted = sum(entity_from_json(large.client.get(large._entity_key("card_id", c))).counts[0] for c in cards_)
    assert counted == pytest.approx(3 * 800 + sent.value, abs=1e-6)


def test_the_embedded_stores_log_is_checkpointed_off_the_requests_path(model: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """Requests never checkpoint (the fsync held the write lock); the store's thread does, so the
    write-ahead log is reused instead of growing with every request."""
    from fraudvae import open_state_store
    from fraudvae.history import checkpoint

    det = FraudVAE.load(model)
    cards_ = [f"c{i}" for i in range(200)]

    def burst(store: object, wal: Path, tag: str) -> int:
        for k in range(20):
            cols, ids = _same_time_rows(cards_, 200, f"{tag}{k}")
            store.apply(cols, 200, ids)  # type: ignore[attr-defined]
        time.sleep(0.3)  # a few checkpoints
        return wal.stat().st_size

    # what one burst leaves in a log nobody checkpoints (the thread's first wait outlasts the test)
    monkeypatch.setattr(checkpoint, "INTERVAL_S", 3600.0)
    unchecked = open_state_store(det.history_.spec, det.history_, folder=tmp_path / "unchecked")
    one_burst = burst(unchecked, next((tmp_path / "unchecked").glob("*-wal")), "u")
    monkeypatch.setattr(checkpoint, "INTERVAL_S", 0.05)
    store = open_state_store(det.history_.spec, det.history_, folder=tmp_path / "state")
    wal = next((tmp_path / "state").glob("*-wal"))
    # checkpointed, the log holds at most what was written since a recent checkpoint (a busy machine
    # may delay one by a burst); unchecked, five bursts would make it about five times one burst's
    sizes = [burst(store, wal, tag) for tag in "abcde"]
    assert max(sizes) < 3 * one_burst, (sizes, one_burst)


def test_the_embedded_store_computes_again_what_another_worker_changed_meanwhile(model: Path, tmp_path: Path) -> None:
    """A request's features are computed outside the write lock from a snapshot; when another
    worker's request for the same card commits in between, they are computed again under the lock:
    the answer is the one of the two requests in turn, and no update is lost."""
    from fraudvae import open_state_store

    det = FraudVAE.load(model)
    first = _same_time_rows(["c1"], 1, "first")
    second = ({**_same_time_rows(["c1"], 1, "second")[0], "when": ["2024-06-01 12:05:00"]}, ["second-0"])
    want = open_state_store(det.history_.spec, det.history_, folder=tmp_path / "turns")
    want.apply(first[0], 1, first[1])
    expected = want.apply(second[0], 1, second[1])

    a = open_state_store(det.history_.spec, det.history_, folder=tmp_path / "race")
    b = open_state_store(det.history_.spec, det.history_, folder=tmp_path / "race")
    snapshot, calls, race = a._snapshot, [], [True]

    def between(*args):  # the other worker commits right after this one read its snapshot
        got = snapshot(*args)
        if race:
            b.apply(first[0], 1, first[1])
            race.clear()
        calls.append(1)
        return got

    a._snapshot = between
    assert a.apply(second[0], 1, second[1]) == expected
    assert len(calls) == 2  # read, then read again under the lock and found changed
    assert (a.redone, b.redone) == (1, 0)  # counted (`fraudvae_state_store_rows_recomputed_total`)
    third = ({**first[0], "when": ["2024-06-01 12:10:00"]}, ["third-0"])
    assert a.apply(third[0], 1, third[1]) == want.apply(third[0], 1, third[1])  # nothing was lost
    assert len(calls) == 3  # nobody else committed: the snapshot was not read again under the lock


def test_redis_writes_each_state_and_id_with_its_expiry_and_an_id_once(model: Path, split, redis_server) -> None:
    """The writes of a request go as one script call per kind (`SET_MANY`): every entity state and
    every id still gets its own expiry (the store stays bounded), and an id applied before is kept
    as it was (NX: a retry never rewrites the first answer)."""
    from fraudvae import open_state_store
    from fraudvae.history.redis_store import set_many

    _, test = split
    det = FraudVAE.load(model)
    store = open_state_store(det.history_.spec, det.history_, url=f"redis://127.0.0.1:{redis_server['port']}/0")
    rows = records(test.head(6))
    cols = {c: [r.get(c) for r in rows] for c in rows[0]}
    first = store.apply(cols, len(rows), cols["tx"])
    longest, horizon = max(det.history_.spec.windows), det.history_.spec.horizon  # the usual's window: 90 days
    assert horizon == 90 * 86400 > longest
    for card in {str(r["card_id"]) for r in rows}:
        assert 2.9 * horizon < store.client.ttl(store.prefix + f"e:card_id:{card}") <= 3 * horizon
    for tx in cols["tx"]:
        assert 0.9 * longest < store.client.ttl(store.prefix + f"id:{tx}") <= longest
    again = store.apply({c: v[:1] for c, v in cols.items()}, 1, cols["tx"][:1])  # a retry: its first answer
    assert [again[name][0] for name in again] == [first[name][0] for name in first]
    key = store.prefix + f"id:{cols['tx'][0]}"
    kept = store.client.get(key)
    with store.client.pipeline(transaction=True) as pipe:  # what a request that raced the first would write
        set_many(pipe, {key: b"[1.0]", store.prefix + "id:other": b"[2.0]"}, 60, nx=True)
        pipe.execute()
    assert store.client.get(key) == kept and store.client.get(store.prefix + "id:other") == b"[2.0]"


def _eventually(holds, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while not holds():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True
