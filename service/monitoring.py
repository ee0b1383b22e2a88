"""Monitoring in the service: a rolling window of the latest scored rows, measured as `fraudvae
monitor` measures a file window (`fraudvae.window_stats`: alert rate and its interval against the
target, p-values against uniform, the columns that moved).

Each worker keeps its own rows in a ring buffer. With several workers (`fraudvae serve`, which sets
``PROMETHEUS_MULTIPROC_DIR``) each also writes them, at most every `FLUSH_S` seconds, to a file of
its own in that directory, and a reading merges every worker's rows and keeps the latest
`monitor_rows` by time: whichever worker answers, ``GET /monitor`` and the gauges describe the same
window. No pickle: plain ``.npy`` arrays in an ``.npz``."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np

from fraudvae import FraudVAE, MonitorConfig, Scores, window_stats

FLUSH_S = 0.5


class Monitor:
    def __init__(self, detector: FraudVAE, rows: int, directory: Path | None,
                 config: MonitorConfig | None = None) -> None:
        self.columns = detector.schema_.names()
        self.baseline = np.asarray(detector.baseline_, dtype=np.float64)
        self.target = detector.threshold_.target
        self.calibration_rows = len(detector.threshold_.validation_scores)
        self.calibration_above = detector.threshold_.above
        self.rows, self.config = rows, config or MonitorConfig()
        self.at = np.full(rows, np.nan)  # when each row was scored (time.time); NaN: an empty slot
        self.flag = np.zeros(rows, bool)
        self.p = np.zeros(rows)
        self.contrib = np.zeros((rows, len(self.columns)))
        self.next = 0
        self.file = directory / f"monitor-{os.getpid()}.npz" if directory is not None else None
        self.flushed_at = 0.0
        self.flush_pending = False

    def add(self, scores: Scores) -> None:
        """Rows just scored (on the event loop: no lock needed)."""
        n = len(scores)
        take = slice(max(0, n - self.rows), n)  # more rows than the window: the latest
        idx = (self.next + np.arange(min(n, self.rows))) % self.rows
        self.at[idx] = time.time()
        self.flag[idx] = scores.flag[take]
        self.p[idx] = scores.p_value[take]
        self.contrib[idx] = scores.contributions[take]
        self.next = int((self.next + min(n, self.rows)) % self.rows)
        if self.file is not None and not self.flush_pending:
            wait = self.flushed_at + FLUSH_S - time.monotonic()
            if wait <= 0:
                self.flush()
            else:
                self.flush_pending = True
                asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        """This worker's rows to its file (atomically: a reader sees the old file or the new one)."""
        self.flush_pending = False
        if self.file is None:
            return
        tmp = self.file.with_suffix(".tmp.npz")
        np.savez(tmp, at=self.at, flag=self.flag, p=self.p, contrib=self.contrib)
        os.replace(tmp, self.file)
        self.flushed_at = time.monotonic()

    def close(self) -> None:
        if self.file is not None:
            self.file.unlink(missing_ok=True)

    def _window(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(flags, p-values, contributions) of the latest `rows` rows over all workers, and how many
        workers hold rows."""
        parts = [(self.at, self.flag, self.p, self.contrib)]
        if self.file is not None:
            self.flush()
            for f in self.file.parent.glob("monitor-*.npz"):
                if f == self.file or f.name.endswith(".tmp.npz"):
                    continue
                try:
                    with np.load(f, allow_pickle=False) as d:
                        if d["contrib"].shape[1:] == self.contrib.shape[1:]:
                            parts.append((d["at"], d["flag"], d["p"], d["contrib"]))
                except (OSError, ValueError, KeyError):  # a worker's file being replaced or gone: skip it
                    continue
        workers = sum(1 for at, *_ in parts if np.isfinite(at).any())
        at = np.concatenate([x[0] for x in parts])
        keep = np.flatnonzero(np.isfinite(at))
        keep = keep[np.argsort(at[keep], kind="stable")][-self.rows:]
        return (np.concatenate([x[1] for x in parts])[keep], np.concatenate([x[2] for x in parts])[keep],
                np.concatenate([x[3] for x in parts])[keep], workers)

    def report(self) -> dict:
        """The window's measures, JSON-ready (what ``GET /monitor`` answers)."""
        flags, p, contrib, workers = self._window()
        stats = window_stats(flags, p, contrib, self.columns, self.baseline, self.target, self.config,
                             calibration_rows=self.calibration_rows, calibration_above=self.calibration_above)
        return {"status": stats.pop("status"), "window": {"rows": len(flags), "limit_rows": self.rows,
                                                          "workers_with_rows": workers},
                "alpha": self.config.alpha, **stats}
