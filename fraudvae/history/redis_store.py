"""The history state store in Redis (``FRAUDVAE_STATE_URL=redis://host:port/db``), for services on
several hosts: the same contract and arithmetic as `store.SQLiteStore` (`request.compute`).

Keys, under ``fraudvae:<specification key>:``: ``e:<column>:<entity>`` an entity's state (JSON, with
a TTL of three longest windows: the store stays bounded; with labels, its pending labels too),
``id:<transaction id>`` the features a transaction got (a TTL of one longest window), ``tx:<id>``
with labels, the transaction's record for labels posted later (`fraudvae.history.labels`; a TTL of
the longest window plus the delay), and the hash ``meta`` (``start``, ``end`` and the
``seeded`` marker). A request is applied optimistically: its entities' keys are WATCHed and read
(with its ids' keys, in one MGET), the features computed, and the new states written in one
MULTI/EXEC, retried when another worker changed one of them meanwhile, so no update is lost. The
clock in ``meta`` moves by a script in the MULTI that keeps the earliest start and the latest end,
so requests for other entities never conflict over it. A request that conflicts `OPTIMISTIC_TRIES`
times takes the ``writer`` lock (SET NX with an expiry), which every writer WATCHes and waits on
while another holds it: a large request among small ones on the same entities is never starved
(it was: 800 rows against a stream of 100-row requests lost 50 tries in a row, a 503). A store
whose marker is gone (Redis restarted without persistence) is noticed and seeded again from the
model's saved state, with a warning: what the entities did since training is lost with it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from fraudvae.errors import StateStoreError
from fraudvae.history import stored
from fraudvae.history.labels import LabelBatch, LabelOutcome, plan, record_ttl
from fraudvae.history.request import Snapshot, compute, redo, request_keys
from fraudvae.history.spec import HistorySpec
from fraudvae.history.state import HistoryState
from fraudvae.history.store import ID_TTL_FACTOR
from fraudvae.history.stored import entity_from_json, entity_json, from_json, to_json, with_pending

log = logging.getLogger("fraudvae.history")
T = TypeVar("T")
TIMEOUT_S = 2.0  # a Redis that does not answer within this is unavailable (503), never waited on longer
OPTIMISTIC_TRIES = 3  # conflicts before a request takes the writer lock
LOCK_MS = 5_000  # the writer lock expires by itself after this (a writer that died holding it)
CONTENDED_S = 10.0  # a request that cannot commit within this is refused (503): the store is too contended
WAIT_S = 0.001  # how often a writer looks again at a lock another holds
# the clock: the earliest start and the latest end any request saw, whatever order requests commit in
CLOCK = """
for i, field in ipairs({'start', 'end'}) do
  local v = ARGV[i]
  if v ~= 'nan' then
    local cur = redis.call('HGET', KEYS[1], field)
    local n = tonumber(v)
    if (not cur) or cur == 'nan' or (i == 1 and n < tonumber(cur)) or (i == 2 and n > tonumber(cur)) then
      redis.call('HSET', KEYS[1], field, v)
    end
  end
end
"""
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
# many keys set in one command, each to its value with an expiry (ARGV[1], seconds), with NX when ARGV[2]
# is 'nx': a request's hundreds of SETs cost redis-py one command to pack and one answer to read, not
# one each (a 400-row call spent most of its time in the client's per-command work)
SET_MANY = """
local ttl, nx = ARGV[1], ARGV[2] == 'nx'
for i, key in ipairs(KEYS) do
  if nx then redis.call('SET', key, ARGV[i + 2], 'EX', ttl, 'NX')
  else redis.call('SET', key, ARGV[i + 2], 'EX', ttl) end
end
"""
_RETRY = object()  # what a transaction's body returns to be run again


class RedisStore:
    def __init__(self, url: str, spec: HistorySpec, seed: HistoryState) -> None:
        try:
            import redis
        except ImportError:
            raise StateStoreError("FRAUDVAE_STATE_URL needs the redis package: pip install 'fraudvae[redis]'") from None
        self._redis = redis
        self.spec, self.seed_state, self.url = spec, seed, url
        self.prefix = f"fraudvae:{spec.key()}:"
        self.client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        self.reseeded = 0  # times the store was found empty and seeded again (a metric)
        self.redone = 0  # rows computed again because another request changed their entities meanwhile
        self.entity_ttl = int(3 * spec.horizon)  # an entity's state outlives three of its longest time constants unseen
        # this process's requests take turns (its threads would only retry one another); the
        # optimistic transaction settles what other processes and hosts do meanwhile
        self._turn = threading.Lock()
        self._release = self.client.register_script(RELEASE)
        self._guard(self._ensure_seeded)

    def _guard(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return fn(*args)
        except self._redis.RedisError as e:
            raise StateStoreError(f"the state store {self.url} is unavailable: {e}") from None

    def _ensure_seeded(self) -> bool:
        """Seed the store from the model's saved state when its marker is missing; True when it did."""
        meta = self.prefix + "meta"
        if self.client.hexists(meta, "seeded"):
            return False
        lock = self.client.lock(self.prefix + "seeding", timeout=120, blocking_timeout=60)
        with lock:
            if self.client.hexists(meta, "seeded"):  # another worker seeded it meanwhile
                return False
            pipe = self.client.pipeline(transaction=False)
            for e, key, _, text in stored.dump(self.seed_state, {e: t.keys for e, t in self.seed_state.tables.items()}):
                pipe.set(self._entity_key(e, key), text, ex=self.entity_ttl)
            pipe.hset(meta, mapping={"start": repr(self.seed_state.start), "end": repr(self.seed_state.end),
                                     "seeded": repr(time.time())})
            pipe.execute()
        return True

    def _entity_key(self, column: str, key: str) -> str:
        return f"{self.prefix}e:{column}:{key}"

    def apply(self, columns: Mapping[str, Sequence], n: int, ids: Sequence | None) -> dict[str, list[float | None]]:
        with self._turn:
            return self._guard(self._apply, columns, n, ids)

    def _transaction(self, reads: list[str], body: Callable[[Any, list], object]) -> object:
        """Run `body` until its MULTI/EXEC commits: the keys `reads` are WATCHed and read (a round
        trip for each of the two), then `body` gets the pipeline in immediate mode and their values; it may WATCH
        and read more, then calls ``multi()`` and queues its writes, or returns `_RETRY`. The writer
        lock is WATCHed and read with them: while another request holds it this one waits; after
        `OPTIMISTIC_TRIES` conflicts this one takes it. `StateStoreError` after `CONTENDED_S`."""
        lock = self.prefix + "writer"
        token = uuid.uuid4().hex.encode()
        deadline = time.monotonic() + CONTENDED_S
        conflicts, took = 0, False
        try:
            while True:
                if conflicts >= OPTIMISTIC_TRIES and self.client.set(lock, token, nx=True, px=LOCK_MS):
                    took = True
                with self.client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(lock, *reads)
                        owner, *values = pipe.mget([lock, *reads])
                        if owner is None or owner == token:
                            result = body(pipe, values)
                            if result is not _RETRY:
                                pipe.execute()
                                return result
                    except self._redis.WatchError:
                        conflicts += 1
                if time.monotonic() > deadline:
                    raise StateStoreError(f"the state store {self.url} is too contended: a request could not "
                                          f"commit within {CONTENDED_S:g} s")
                if owner is not None and owner != token:
                    time.sleep(WAIT_S)
        finally:
            if took:
                self._release(keys=[lock], args=[token])

    def _apply(self, columns: Mapping[str, Sequence], n: int, ids: Sequence | None) -> dict[str, list[float | None]]:
        keys = request_keys(self.spec, columns)
        entity_keys = [(e, k, self._entity_key(e, k)) for e, ks in keys.items() for k in ks]
        rid = sorted({str(i) for i in ids if i is not None}) if ids is not None else []
        meta = self.prefix + "meta"
        longest = max(self.spec.windows)
        tried: list = []  # the last try's snapshot and result

        def body(pipe: Any, got: list) -> object:
            values, seen = got[: len(entity_keys)], got[len(entity_keys):]
            start, end, seeded = pipe.hmget(meta, ["start", "end", "seeded"])
            if seeded is None:  # emptied (Redis restarted without persistence): seed again, then retry
                self._reseed_if_empty()
                return _RETRY
            load: dict[str, dict[str, str | bytes]] = {e: {} for e in keys}
            for (e, k, _), v in zip(entity_keys, values, strict=True):
                if v is not None:
                    load[e][k] = v
            known: dict[str, list] = {i: from_json(v) for i, v in zip(rid, seen, strict=True) if v is not None}
            now: Snapshot = (load, float(start or "nan"), float(end or "nan"), known)
            if tried:  # an earlier try lost to another request: compute again only what it changed
                result, again = redo(self.spec, columns, n, ids, tried[0], now, tried[1])
                self.redone += again
            else:
                result = compute(self.spec, columns, n, ids, *now)
            tried[:] = [now, result]
            out, state, fresh, records = result
            pipe.multi()
            if fresh:
                set_many(pipe, {self._entity_key(e, k): text for e, k, _, text in stored.dump(state, keys)},
                          self.entity_ttl)
                set_many(pipe, {self.prefix + "tx:" + tx_id: to_json(r) for tx_id, r in records.items()},
                          int(record_ttl(self.spec)), nx=True)
                pipe.eval(CLOCK, 1, meta, repr(state.start), repr(state.end))  # no SCRIPT EXISTS round trip
                names = self.spec.names()
                if ids is not None:
                    set_many(pipe, {self.prefix + "id:" + str(ids[i]): to_json([out[m][i] for m in names])
                                     for i in fresh if ids[i] is not None}, int(ID_TTL_FACTOR * longest), nx=True)
            return out

        reads = [k for _, _, k in entity_keys] + [self.prefix + "id:" + i for i in rid]
        return cast(dict[str, list[float | None]], self._transaction(reads, body))

    def label(self, batch: LabelBatch) -> LabelOutcome:
        with self._turn:
            return self._guard(self._label, batch)

    def _label(self, batch: LabelBatch) -> LabelOutcome:
        """Posted labels in one optimistic transaction: the transactions' records WATCHed and read,
        then their entities' states, the pending labels added and everything written in one MULTI."""
        ids = sorted(set(batch.ids))
        tx_keys = [self.prefix + "tx:" + i for i in ids]

        def body(pipe: Any, values: list) -> object:
            records = {i: from_json(v) for i, v in zip(ids, values, strict=True) if v is not None}
            adds, changed, outcome = plan(self.spec, records, batch)
            targets = [(e, k, self._entity_key(e, k)) for e, per_key in adds.items() for k in per_key]
            if targets:
                pipe.watch(*(key for _, _, key in targets))
            states = pipe.mget([key for _, _, key in targets]) if targets else []
            pipe.multi()
            for (e, k, key), v in zip(targets, states, strict=True):
                if v is not None:  # an entity forgotten since (quiet for long) has no history to add to
                    pipe.set(key, entity_json(with_pending(entity_from_json(v), adds[e][k])), ex=self.entity_ttl)
            for i, r in changed.items():
                pipe.set(self.prefix + "tx:" + i, to_json(r), keepttl=True)
            return outcome

        return cast(LabelOutcome, self._transaction(tx_keys, body))

    def _reseed_if_empty(self) -> None:
        """Seed again, with a warning and a count, a store found empty after it was seeded once."""
        if self._ensure_seeded():
            self.reseeded += 1
            log.warning("the history state store %s held nothing for this model's specification (restarted "
                        "without persistence?): seeded again from the model's saved state; the entities' "
                        "transactions since training are lost", self.url)

    def ping(self) -> None:
        self._guard(self.client.ping)
        self._guard(self._reseed_if_empty)

    def entities(self) -> int:
        """The entities held for this specification: its state keys, counted by SCAN (in steps: Redis
        keeps answering others meanwhile), not the database's size (ids, records, other models)."""
        return self._guard(lambda: sum(1 for _ in self.client.scan_iter(match=self.prefix + "e:*", count=1000)))


def set_many(pipe: Any, values: dict[str, str | bytes], ttl: int, nx: bool = False) -> None:
    """Queue SETs of `values` (key -> value) with the expiry `ttl` (seconds), NX when `nx`, as one
    script call (`SET_MANY`); nothing when there are none."""
    if values:
        pipe.eval(SET_MANY, len(values), *values, ttl, "nx" if nx else "", *values.values())
