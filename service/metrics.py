"""Prometheus metrics of one app.

One worker: the app's own registry (so several apps can live in one process, as tests do). Several
workers (`fraudvae serve --workers N`, which sets ``PROMETHEUS_MULTIPROC_DIR``): prometheus-client's
multiprocess mode, in which every worker writes its values to files in that directory and each
scrape, whichever worker answers it, reads all of them: counters sum over the workers and never
go backwards between scrapes, the queue gauge sums the live workers' queues, the threshold gauge is
the workers' (equal) value."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
SIZE_BUCKETS = tuple(float(2**k) for k in range(0, 15))
SMALL_BATCH = 8  # up to this many values, observe_many calls observe per value


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    def __init__(self, score_bounds: np.ndarray, queue_rows: Callable[[], float], threshold: float,
                 shadow_backlog: Callable[[], float] | None = None) -> None:
        shared = multiprocess()
        self.queue: Gauge | None
        self.shadow_backlog: Gauge | None
        r = self.registry = CollectorRegistry()
        # in multiprocess mode values live in the shared files; the registry only renders them
        own = None if shared else r
        self.latency = Histogram("fraudvae_request_seconds", "request latency by path", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=own)
        self.responses = Counter("fraudvae_responses", "answers by path and status", ["path", "status"], registry=own)
        self.rows = Counter("fraudvae_rows_scored", "rows scored", registry=own)
        self.flagged = Counter("fraudvae_rows_flagged", "rows flagged (flag rate = flagged / scored)", registry=own)
        self.batch_rows = Histogram("fraudvae_batch_rows", "rows per forward pass", buckets=SIZE_BUCKETS, registry=own)
        self.batch_requests = Histogram("fraudvae_batch_requests", "requests per forward pass",
                                        buckets=SIZE_BUCKETS, registry=own)
        self.batch_seconds = Histogram("fraudvae_batch_seconds", "time to score one batch",
                                       buckets=LATENCY_BUCKETS, registry=own)
        # the distribution of every score served; counted a batch at a time (below)
        self.scores = Histogram("fraudvae_score", "scores served (negative ELBO, nats)",
                                buckets=[float(b) for b in np.unique(score_bounds)], registry=own)
        self.queue_rows = queue_rows
        # champion and challenger (`service.shadow`): counters, so they sum over the workers
        self.shadow = {name: Counter(f"fraudvae_shadow_{name}", doc, registry=own) for name, doc in (
            ("rows", "rows the challenger scored"), ("challenger_alerts", "rows the challenger flagged"),
            ("alerts_both", "rows both models flagged"), ("alerts_only_champion", "rows only the champion flagged"),
            ("alerts_only_challenger", "rows only the challenger flagged"))}
        self.store_seconds = Histogram("fraudvae_state_store_seconds", "history state store: read, derive and write "
                                       "one call (the requests that arrived together)", buckets=LATENCY_BUCKETS,
                                       registry=own)
        self.store_errors = Counter("fraudvae_state_store_errors", "history state store failures (answered 503)",
                                    registry=own)
        self.store_redone = Counter("fraudvae_state_store_rows_recomputed", "rows whose history features were "
                                    "computed again because another worker changed their entities meanwhile "
                                    "(contention on the same cards)", registry=own)
        self.store_reseeds = Counter("fraudvae_state_store_reseeds", "times the history state store was found empty "
                                     "for this model (Redis restarted without persistence) and seeded again from the "
                                     "model's saved state", registry=own)
        self.store_entities = Gauge("fraudvae_state_store_entities", "entities the history state store holds "
                                    "for this model's history specification (counted at most every 30 s, in the "
                                    "background)", registry=own, multiprocess_mode="max")
        self.labels = Counter("fraudvae_labels", "labels posted (POST /labels) by outcome: applied (a first label), "
                              "changed (a correction), unchanged (the same again), unknown (no such transaction)",
                              ["outcome"], registry=own)
        self._children: dict[tuple[str, int], tuple] = {}
        if shared:
            from prometheus_client import multiprocess as mp

            mp.MultiProcessCollector(r)
            self.queue = Gauge("fraudvae_queue_rows", "rows waiting for a forward pass", registry=None,
                               multiprocess_mode="livesum")
            Gauge("fraudvae_threshold", "the model's threshold", registry=None, multiprocess_mode="max").set(threshold)
            self.shadow_backlog = Gauge("fraudvae_shadow_backlog_rows", "rows waiting for the shadow model",
                                        registry=None, multiprocess_mode="livesum") if shadow_backlog else None
        else:
            Gauge("fraudvae_queue_rows", "rows waiting for a forward pass", registry=r).set_function(queue_rows)
            Gauge("fraudvae_threshold", "the model's threshold", registry=r).set(threshold)
            if shadow_backlog is not None:
                Gauge("fraudvae_shadow_backlog_rows", "rows waiting for the shadow model",
                      registry=r).set_function(shadow_backlog)
            self.queue = self.shadow_backlog = None
        self.backlog = shadow_backlog

    def on_answer(self, path: str, status: int, seconds: float) -> None:
        """One answered request. The labelled children are kept: looking them up costs more than
        counting."""
        key = (path, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.latency.labels(path), self.responses.labels(path, str(status)))
        children[0].observe(seconds)
        children[1].inc()

    def on_batch(self, rows: int, requests: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)
        if self.queue is not None:
            self.queue.set(self.queue_rows())
        if self.shadow_backlog is not None and self.backlog is not None:
            self.shadow_backlog.set(self.backlog())

    def on_store(self, seconds: float, failed: bool, redone: int = 0) -> None:
        self.store_seconds.observe(seconds)
        if failed:
            self.store_errors.inc()
        if redone:
            self.store_redone.inc(redone)

    def on_reseeds(self, n: int) -> None:
        self.store_reseeds.inc(n)

    def on_labels(self, outcome: dict) -> None:
        for name in ("applied", "changed", "unchanged", "unknown"):
            if outcome[name]:
                self.labels.labels(name).inc(outcome[name])

    def on_entities(self, n: int) -> None:
        self.store_entities.set(n)

    def on_scored(self, scores: np.ndarray, flags: np.ndarray) -> None:
        self.rows.inc(len(scores))
        self.flagged.inc(int(np.count_nonzero(flags)))
        observe_many(self.scores, scores)

    def on_shadow(self, rows: int, challenger_alerts: int, both: int, only_champion: int,
                  only_challenger: int) -> None:
        for name, n in zip(self.shadow, (rows, challenger_alerts, both, only_champion, only_challenger), strict=True):
            self.shadow[name].inc(n)

    def watch(self, report: Callable[[], dict]) -> None:
        """Gauges of the monitoring window (`service.monitoring`), computed from `report()` at each
        scrape: over every worker's rows, whichever worker answers."""
        self.registry.register(_MonitorCollector(report))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _MonitorCollector(Collector):
    def __init__(self, report: Callable[[], dict]) -> None:
        self.report = report

    def collect(self) -> Iterator[GaugeMetricFamily]:
        r = self.report()
        lo, hi = r["alert_rate_interval"]
        expected_lo, expected_hi = r["alert_rate_expected"] or (None, None)  # None: an empty window
        for name, doc, value in (
                ("fraudvae_monitor_window_rows", "rows in the monitoring window (all workers)", r["window"]["rows"]),
                ("fraudvae_monitor_alert_rate", "share of the window's rows flagged", r["alert_rate"]),
                ("fraudvae_monitor_alert_rate_low", "lower end of the alert rate's interval", lo),
                ("fraudvae_monitor_alert_rate_high", "upper end of the alert rate's interval", hi),
                ("fraudvae_monitor_target", "the alert rate the threshold was set for", r["target"]),
                ("fraudvae_monitor_alert_rate_expected_low", "fewest alerts per row that normal traffic gives "
                 "at this threshold (the window is drift below it)", expected_lo),
                ("fraudvae_monitor_alert_rate_expected_high", "most alerts per row that normal traffic gives "
                 "at this threshold (the window is drift above it)", expected_hi),
                ("fraudvae_monitor_ks_statistic", "KS distance of the window's p-values from uniform",
                 r["ks_statistic"]),
                ("fraudvae_monitor_drift", "1 when the window is out of bounds (status drift), else 0",
                 float(r["status"] == "drift"))):
            yield GaugeMetricFamily(name, doc, value=float("nan") if value is None else float(value))
        shift = GaugeMetricFamily("fraudvae_monitor_column_shift_nats", "a column's median contribution in the "
                                  "window minus its validation median", labels=["column"])
        for column, value in r["column_shift_nats"].items():
            shift.add_metric([column], float("nan") if value is None else value)
        yield shift


def observe_many(hist: Histogram, values: np.ndarray) -> None:
    """`Histogram.observe` for a whole batch at once: one counting pass with numpy instead of one
    Python call per value (thousands of rows a request). The increments are the ones `observe`
    makes: each value to the first bucket whose bound is >= it (``_buckets`` holds per-bucket
    counts, made cumulative on collection), and the sum. A few values go through `observe` itself,
    which is cheaper than numpy's setup for them."""
    if len(values) <= SMALL_BATCH:
        for v in values.tolist():
            hist.observe(v)
        return
    bounds = np.asarray(hist._upper_bounds, dtype=np.float64)  # ends with +inf
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, n in zip(hist._buckets, counts.tolist(), strict=False):
        if n:
            bucket.inc(n)
    hist._sum.inc(float(np.sum(values)))
