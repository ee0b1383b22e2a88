"""The embedded store's checkpoints, off the requests' path.

In WAL mode a commit appends to the write-ahead log and SQLite copies the log into the database
file (a checkpoint, with an fsync) when the log passes 1,000 pages, inside whichever commit crosses
it, while that worker holds the store's write lock: on this machine 2.4 of the 3.5 ms a 100-row
request's commit took on average. The store's connections turn that off; a thread per store instead
runs a PASSIVE checkpoint (it never waits for, nor blocks, readers and writers) every `INTERVAL_S`,
so the log stays bounded by what one interval writes and no request pays for the fsync. A process
that dies leaves the log behind; SQLite replays it when the file is next opened.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from pathlib import Path

log = logging.getLogger("fraudvae.history")
INTERVAL_S = 1.0


def start(path: Path, owner: object, timeout_s: float) -> None:
    """Checkpoint `path` every `INTERVAL_S` for as long as `owner` (the store) lives."""
    stop = threading.Event()
    weakref.finalize(owner, stop.set)
    threading.Thread(target=_run, args=(path, stop, timeout_s), name="fraudvae-checkpoint", daemon=True).start()


def _run(path: Path, stop: threading.Event, timeout_s: float) -> None:
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    failed = False
    try:
        while not stop.wait(INTERVAL_S):
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                failed = False
            except sqlite3.Error as e:  # the next round tries again; say so once per run of failures
                if not failed:
                    log.warning("checkpointing the history state store %s failed: %s", path, e)
                failed = True
    finally:
        db.close()
