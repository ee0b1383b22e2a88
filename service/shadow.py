"""Champion and challenger: every request the champion answers is also scored by a challenger model,
off the response path (a thread of its own, after the answer is on its way), so a new model can be
judged on live traffic before it takes over.

What is measured: the challenger's alert rate beside the champion's, the overlap of their alerts
(both, only the champion, only the challenger; Prometheus counters, summed over the workers), and
the rank correlation of their scores over the latest rows (this worker's). With
``FRAUDVAE_SHADOW_LOG`` every challenger score is appended to that file as a JSON line with the
transaction's id and the champion's score, for offline comparison."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
from scipy import stats

from fraudvae import ConfigError, FraudVAE, Scores

from .batching import Batch

log = logging.getLogger("service")
MAX_PENDING_ROWS = 65536
PASS_ROWS = 4096  # rows the challenger scores in one pass at most: bounded memory, and a short wait at shutdown


def check_schemas(champion: FraudVAE, challenger: FraudVAE) -> None:
    """Refuse a challenger that cannot score the champion's requests, naming the columns. A challenger
    with entity columns reads the champion's history features (the same state, never written by
    it), so its history specification must be the champion's."""
    ours, its = champion.history_, challenger.history_
    if its is not None and (ours is None or ours.spec.key() != its.spec.key()):
        raise ConfigError("the shadow model reads entity history the served model does not keep (another "
                          "--entity-column, windows or columns): a challenger reads the champion's history, "
                          "so fit it with the same entity options")
    mine, theirs = champion.schema_.names(), challenger.schema_.names()
    missing = [c for c in theirs if c not in mine]
    if missing:
        raise ConfigError(f"the shadow model needs column(s) the served model does not: {', '.join(missing)} "
                          "(a challenger must read the champion's requests)")
    if set(mine) != set(theirs):
        extra = [c for c in mine if c not in theirs]
        raise ConfigError(f"the shadow model's columns differ from the served model's: it lacks {', '.join(extra)}")


class Shadow:
    def __init__(self, challenger: FraudVAE, log_path: Path | None, window_rows: int,
                 on_scored: Callable[[int, int, int, int, int], None] | None = None) -> None:
        self.detector = challenger
        self.window_rows = window_rows
        self.on_scored = on_scored  # called with (rows, challenger alerts, both, only champion, only challenger)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fraudvae-shadow")
        self._lock = threading.Lock()
        self._log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if log_path else None
        self.rows = self.champion_alerts = self.challenger_alerts = self.both = 0
        self._pairs = np.full((window_rows, 2), np.nan)  # (champion, challenger) scores, latest rows
        self._next = 0
        self._pending: list[tuple[Batch, Scores]] = []
        self._pending_rows, self._scheduled, self.dropped = 0, False, 0
        self._closing, self.dropped_at_shutdown = False, 0

    @property
    def backlog_rows(self) -> int:
        """Rows waiting for the challenger now."""
        with self._lock:
            return self._pending_rows

    def submit(self, batch: Batch, champion: Scores) -> None:
        """Score `batch` with the challenger later, in the shadow thread, together with whatever else
        is waiting by then (one forward pass for many requests). Beyond `MAX_PENDING_ROWS` waiting,
        the rows are not shadowed (counted as dropped): the champion's traffic comes first."""
        with self._lock:
            if self._closing or self._pending_rows + batch.n > MAX_PENDING_ROWS:
                self.dropped += batch.n
                return
            self._pending.append((batch, champion))
            self._pending_rows += batch.n
            if self._scheduled:
                return
            self._scheduled = True
        self._executor.submit(self._drain)

    def _drain(self) -> None:
        """Score up to `PASS_ROWS` of the waiting rows (whole requests, at least one) in one pass;
        what remains is scheduled again, so shutdown never waits on more than one pass."""
        with self._lock:
            if self._closing:
                return
            taken = rows = 0
            while taken < len(self._pending) and (taken == 0 or rows + self._pending[taken][0].n <= PASS_ROWS):
                rows += self._pending[taken][0].n
                taken += 1
            items, self._pending = self._pending[:taken], self._pending[taken:]
            self._pending_rows -= rows
            self._scheduled = bool(self._pending)
        if self._scheduled:
            self._executor.submit(self._drain)
        if not items:
            return
        batch = Batch.concat([b for b, _ in items])
        champion = Scores.concat([s for _, s in items])
        try:
            scores = self.detector.score_encoded(self.detector.encode_columns(batch.columns, batch.n))
        except Exception:  # the challenger's fault (or a row only it refuses): logged, never the champion's
            log.exception("the shadow model failed on a batch of %d rows", batch.n)
            return
        a, b = champion.flag, scores.flag
        counts = (len(b), int(b.sum()), int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()))
        with self._lock:
            self.rows += counts[0]
            self.champion_alerts += int(a.sum())
            self.challenger_alerts += counts[1]
            self.both += counts[2]
            k = min(len(b), self.window_rows)
            idx = (self._next + np.arange(k)) % self.window_rows
            self._pairs[idx] = np.c_[champion.score[-k:], scores.score[-k:]]
            self._next = int((self._next + k) % self.window_rows)
        if self.on_scored is not None:
            self.on_scored(*counts)
        if self._log is not None:
            lines = b"".join(orjson.dumps({"id": i, "score": s, "flag": f, "champion_score": cs, "champion_flag": cf,
                                           "model_version": self.detector.version_}) + b"\n"
                             for i, s, f, cs, cf in zip(batch.ids, scores.score.tolist(), b.tolist(),
                                                        champion.score.tolist(), a.tolist(), strict=True))
            os.write(self._log, lines)  # one append per batch: lines of several workers never interleave

    def report(self) -> dict:
        with self._lock:
            pairs = self._pairs[np.isfinite(self._pairs[:, 0])]
            rows, ca, ch, both = self.rows, self.champion_alerts, self.challenger_alerts, self.both
        rho = float(stats.spearmanr(pairs[:, 0], pairs[:, 1]).statistic) if len(pairs) >= 3 else None
        return {"challenger_version": self.detector.version_, "rows": rows,
                "champion_alert_rate": ca / rows if rows else None,
                "challenger_alert_rate": ch / rows if rows else None,
                "alerts_both": both, "alerts_only_champion": ca - both, "alerts_only_challenger": ch - both,
                "rank_correlation": None if rho is None or not np.isfinite(rho) else rho,
                "rows_not_shadowed": self.dropped, "rows_waiting": self.backlog_rows,
                "rows_dropped_at_shutdown": self.dropped_at_shutdown,
                "scope": "this worker's rows"}

    def close(self) -> None:
        """Stop: the pass in progress finishes (at most `PASS_ROWS` rows, so the log ends whole);
        rows still waiting are dropped and counted (logged), not scored: at shutdown the champion's
        answers are what matter, and a slow challenger must not hold the process past its deadline."""
        with self._lock:
            self._closing = True
            self.dropped_at_shutdown = self._pending_rows
            self._pending, self._pending_rows = [], 0
        if self.dropped_at_shutdown:
            log.warning("shutdown: %d rows waiting for the shadow model were not scored", self.dropped_at_shutdown)
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._log is not None:
            os.close(self._log)
