"""Shared per-entity state for scoring transactions as they arrive (the service): every worker reads
and writes the same entities' states, atomically, so concurrent requests for one card never lose an
update, and a retried transaction id gets its first answer's features back without counting twice.

Two stores, one contract (`StateStore.apply`): `SQLiteStore`, embedded (a file in a state folder,
WAL mode, one write transaction per request: nothing to install or start, right for the workers of
one host), and `RedisStore` (several hosts). State is kept under the history specification's key
(`HistorySpec.key`): models with the same specification share it, another one never reads it. A
store with nothing for a specification is seeded from the model's saved end-of-training state, so a
fresh service answers as `fraudvae score` would on the same transactions.

The features of a request come from `derive` itself on a `HistoryState` holding just the request's
entities, loaded from the store (`fraudvae.history.request`): the same arithmetic as a file, row for
row.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from fraudvae.errors import StateStoreError
from fraudvae.history import checkpoint, stored
from fraudvae.history.labels import LabelBatch, LabelOutcome, Record, plan, record_ttl
from fraudvae.history.request import Snapshot, compute, redo, request_keys
from fraudvae.history.spec import HistorySpec
from fraudvae.history.state import HistoryState, earliest, latest
from fraudvae.history.stored import entity_from_json, entity_json, from_json, to_json, with_pending

BUSY_TIMEOUT_S = 10.0  # how long a write waits for another worker's transaction before the store is called unavailable
# an entity's state written in place (INSERT OR REPLACE deletes the row and inserts it at the table's end:
# twice the pages written to the log at each commit; a 100-row request's COMMIT 0.83-0.93 -> 0.57-0.61 ms)
UPSERT_ENTITY = ("INSERT INTO entity VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT (spec, col, key) DO UPDATE SET last = excluded.last, state = excluded.state")
ID_TTL_FACTOR = 1.0  # a transaction id is remembered for this many times the longest window (retries come sooner)


def open_state_store(spec: HistorySpec, seed: HistoryState, url: str | None = None,
                     folder: Path | None = None) -> StateStore:
    """Redis at `url` (redis://host:port/db), else the embedded SQLite file in `folder`; either is
    seeded from `seed` (the model's saved state) when it holds nothing for `spec`."""
    if url:
        from fraudvae.history.redis_store import RedisStore

        return RedisStore(url, spec, seed)
    if folder is None:
        raise ValueError("an embedded state store needs a folder")
    return SQLiteStore(Path(folder) / "history.sqlite3", spec, seed)


class StateStore(Protocol):
    spec: HistorySpec
    reseeded: int  # times the store was found empty for `spec` while serving and seeded again
    redone: int  # rows computed again because another request changed their entities meanwhile

    def apply(self, columns: Mapping[str, Sequence], n: int, ids: Sequence | None) -> dict[str, list[float | None]]:
        """The history features of `n` transactions given column-wise (JSON values), computed from the
        stored states and applied to them in one atomic step; a transaction whose id was applied
        before gets the features it got then and changes nothing."""
        ...

    def ping(self) -> None:
        """Raise `StateStoreError` unless the store answers."""
        ...

    def label(self, batch: LabelBatch) -> LabelOutcome:
        """Count posted labels in the entities' history (`fraudvae.history.labels`), atomically."""
        ...

    def entities(self) -> int:
        """Entities held for this specification."""
        ...


class SQLiteStore:
    """The embedded store: `path` (a SQLite file, WAL mode) shared by the workers of one host. Each
    request is one ``BEGIN IMMEDIATE`` transaction: workers take turns per request, so no update is
    lost, and a crash mid-request changes nothing."""

    def __init__(self, path: Path, spec: HistorySpec, seed: HistoryState | None = None) -> None:
        self.path, self.spec, self.key = Path(path), spec, spec.key()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._applied = 0
        self.reseeded = 0  # a file the service opened cannot be emptied under it
        self.redone = 0  # rows computed again because another worker changed their entities meanwhile
        # requests take turns on a lock the kernel hands over at once: SQLite's own busy handler
        # polls with sleeps of up to 100 ms, which set the tail latency under concurrency
        self._turn = threading.Lock()
        self._lockfile = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (spec TEXT, name TEXT, value TEXT, PRIMARY KEY (spec, name))")
            db.execute("CREATE TABLE IF NOT EXISTS entity (spec TEXT, col TEXT, key TEXT, last REAL, state TEXT, "
                       "PRIMARY KEY (spec, col, key))")
            db.execute("CREATE TABLE IF NOT EXISTS seen (spec TEXT, id TEXT, at REAL, features TEXT, "
                       "PRIMARY KEY (spec, id))")
            db.execute("CREATE TABLE IF NOT EXISTS tx (spec TEXT, id TEXT, t REAL, record TEXT, "
                       "PRIMARY KEY (spec, id))")
            if seed is not None and self._meta(db, "seeded") is None:
                self._seed(db, seed)
        checkpoint.start(self.path, self, BUSY_TIMEOUT_S)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")  # `checkpoint` does it, off the requests' path
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._turn:  # this process's threads, then the other processes (an advisory file lock)
            fcntl.flock(self._lockfile, fcntl.LOCK_EX)
            try:
                try:
                    db = self._connection()
                    db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as e:
                    raise StateStoreError(f"the state store {str(self.path)!r} is unavailable: {e}") from None
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            finally:
                fcntl.flock(self._lockfile, fcntl.LOCK_UN)

    def _meta(self, db: sqlite3.Connection, name: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE spec = ? AND name = ?", (self.key, name)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, db: sqlite3.Connection, name: str, value: str) -> None:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", (self.key, name, value))

    def _seed(self, db: sqlite3.Connection, seed: HistoryState) -> None:
        rows = [(self.key, e, k, last, text)
                for e, k, last, text in stored.dump(seed, {e: t.keys for e, t in seed.tables.items()})]
        db.executemany(UPSERT_ENTITY, rows)
        self._set_meta(db, "start", repr(seed.start))
        self._set_meta(db, "end", repr(seed.end))
        self._set_meta(db, "seeded", repr(time.time()))

    def apply(self, columns: Mapping[str, Sequence], n: int, ids: Sequence | None) -> dict[str, list[float | None]]:
        """Optimistically: the request's states are read (a WAL snapshot, no lock) and its features
        computed outside the write lock, which is then held only to read them again (unless no other
        connection committed meanwhile: SQLite's data version) and write; when
        another worker changed what the computation read meanwhile, the rows of the entities it
        changed are computed again under the lock (`request.redo`).
        Two workers' requests for other entities thus compute at once (the computation was 61% of a
        100-row request's time under the lock)."""
        keys = request_keys(self.spec, columns)
        rid = sorted({str(i) for i in ids if i is not None}) if ids is not None else []
        try:
            db = self._connection()
            db.execute("BEGIN")
            try:
                seen = self._snapshot(db, keys, rid)
                version = _data_version(db)
            finally:
                db.execute("COMMIT")
            result = compute(self.spec, columns, n, ids, *seen)
            with self._transaction() as db:
                # no other connection committed since the snapshot: it is still what the store holds
                now = seen if _data_version(db) == version else self._snapshot(db, keys, rid)
                (out, state, fresh, records), again = redo(self.spec, columns, n, ids, seen, now, result)
                self.redone += again
                if fresh:
                    rows = [(self.key, e, k, last, text) for e, k, last, text in stored.dump(state, keys)]
                    db.executemany(UPSERT_ENTITY, rows)
                    db.executemany("INSERT OR IGNORE INTO tx VALUES (?, ?, ?, ?)",
                                   [(self.key, i, r[0], to_json(r)) for i, r in records.items()])
                    # the clock as other requests left it: a computation from before they ran is
                    # still the one from now (`request.unchanged`) but knew an earlier end
                    self._set_meta(db, "start", repr(earliest(state.start, now[1])))
                    self._set_meta(db, "end", repr(latest(state.end, now[2])))
                    if ids is not None:
                        names = self.spec.names()
                        db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?)",
                                       [(self.key, str(ids[i]), state.end, to_json([out[m][i] for m in names]))
                                        for i in fresh if ids[i] is not None])
                self._applied += 1
                if self._applied % 1000 == 0:
                    self._expire(db, state.end)
        except sqlite3.Error as e:
            raise StateStoreError(f"the state store {str(self.path)!r} failed: {e}") from None
        return out

    def _snapshot(self, db: sqlite3.Connection, keys: Mapping[str, list[str]], rid: list[str]) -> Snapshot:
        """What a request's computation reads: its entities' stored states, the clock's start and
        end, and the features of its ids applied before."""
        load: dict[str, dict[str, str | bytes]] = {}
        for e, ks in keys.items():
            load[e] = {}
            for part in _chunks(ks):
                q = f"SELECT key, state FROM entity WHERE spec = ? AND col = ? AND key IN ({','.join('?' * len(part))})"
                load[e].update(db.execute(q, (self.key, e, *part)).fetchall())
        start, end = (float(self._meta(db, name) or "nan") for name in ("start", "end"))
        known = {}
        for part in _chunks(rid):
            q = f"SELECT id, features FROM seen WHERE spec = ? AND id IN ({','.join('?' * len(part))})"
            known.update({i: from_json(f) for i, f in db.execute(q, (self.key, *part))})
        return load, start, end, known

    def _expire(self, db: sqlite3.Connection, end: float) -> None:
        """Forget entities unseen for 3 of their longest time constants (`HistorySpec.horizon`) and ids older
        than the longest window: the store stays bounded."""
        longest = max(self.spec.windows)
        db.execute("DELETE FROM entity WHERE spec = ? AND last < ?", (self.key, end - 3 * self.spec.horizon))
        db.execute("DELETE FROM seen WHERE spec = ? AND at < ?", (self.key, end - ID_TTL_FACTOR * longest))
        db.execute("DELETE FROM tx WHERE spec = ? AND t < ?", (self.key, end - record_ttl(self.spec)))

    def label(self, batch: LabelBatch) -> LabelOutcome:
        """Count posted labels (`fraudvae.history.labels`) in one write transaction: the records of
        their transactions read, each entity's pending labels added, the records written back."""
        try:
            with self._transaction() as db:
                records: dict[str, Record | None] = {}
                for part in _chunks(sorted(set(batch.ids))):
                    q = f"SELECT id, record FROM tx WHERE spec = ? AND id IN ({','.join('?' * len(part))})"
                    records.update({i: from_json(r) for i, r in db.execute(q, (self.key, *part))})
                adds, changed, outcome = plan(self.spec, records, batch)
                rows = []
                for e, per_key in adds.items():
                    for k, items in per_key.items():
                        row = db.execute("SELECT state FROM entity WHERE spec = ? AND col = ? AND key = ?",
                                         (self.key, e, k)).fetchone()
                        if row is not None:  # an entity forgotten since (quiet for long) has no history to add to
                            s = with_pending(entity_from_json(row[0]), items)
                            rows.append((self.key, e, k, s.last, entity_json(s)))
                db.executemany(UPSERT_ENTITY, rows)
                db.executemany("UPDATE tx SET record = ? WHERE spec = ? AND id = ?",
                               [(to_json(r), self.key, i) for i, r in changed.items()])
        except sqlite3.Error as e:
            raise StateStoreError(f"the state store {str(self.path)!r} failed: {e}") from None
        return outcome

    def ping(self) -> None:
        try:
            self._connection().execute("SELECT 1").fetchone()
        except sqlite3.Error as e:
            raise StateStoreError(f"the state store {str(self.path)!r} is unavailable: {e}") from None

    def entities(self) -> int:
        row = self._connection().execute("SELECT COUNT(*) FROM entity WHERE spec = ?", (self.key,)).fetchone()
        return int(row[0])


def _data_version(db: sqlite3.Connection) -> int:
    """SQLite's count of other connections' commits as this connection's transaction sees them: equal
    at two points of one connection, nothing was committed by another in between."""
    return int(db.execute("PRAGMA data_version").fetchone()[0])


def _chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield values[i: i + size]
