"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
SIZE_BUCKETS = tuple(float(2**k) for k in range(0, 15))


class ScoreHistogram(Collector):
    """Distribution of every score served, counted with numpy a batch at a time (a Prometheus
    `Histogram` takes one `observe` call per value: too slow for thousands of rows a request)."""

    def __init__(self, bounds: np.ndarray) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # last: above every bound
        self.total = 0.0

    def observe_many(self, scores: np.ndarray) -> None:
        self.counts += np.bincount(np.searchsorted(self.bounds, scores, side="left"), minlength=len(self.counts))
        self.total += float(np.sum(scores))

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative = np.cumsum(self.counts)
        buckets = [(f"{b:g}", int(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)]
        buckets.append(("+Inf", int(cumulative[-1])))
        yield HistogramMetricFamily("fraudvae_score", "scores served (negative ELBO, nats)",
                                    buckets=buckets, sum_value=self.total)


class Metrics:
    def __init__(self, score_bounds: np.ndarray, queue_rows: Callable[[], float], threshold: float) -> None:
        r = self.registry = CollectorRegistry()
        self.latency = Histogram("fraudvae_request_seconds", "request latency by path", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.responses = Counter("fraudvae_responses", "answers by path and status", ["path", "status"], registry=r)
        self.rows = Counter("fraudvae_rows_scored", "rows scored", registry=r)
        self.flagged = Counter("fraudvae_rows_flagged", "rows flagged (flag rate = flagged / scored)", registry=r)
        self.batch_rows = Histogram("fraudvae_batch_rows", "rows per forward pass", buckets=SIZE_BUCKETS, registry=r)
        self.batch_requests = Histogram("fraudvae_batch_requests", "requests per forward pass",
                                        buckets=SIZE_BUCKETS, registry=r)
        self.batch_seconds = Histogram("fraudvae_batch_seconds", "time to score one batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        Gauge("fraudvae_queue_rows", "rows waiting for a forward pass", registry=r).set_function(queue_rows)
        Gauge("fraudvae_threshold", "the model's threshold", registry=r).set(threshold)
        self.scores = ScoreHistogram(score_bounds)
        r.register(self.scores)

    def on_batch(self, rows: int, requests: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)

    def on_scored(self, scores: np.ndarray, flags: np.ndarray) -> None:
        self.rows.inc(len(scores))
        self.flagged.inc(int(np.count_nonzero(flags)))
        self.scores.observe_many(scores)

    def render(self) -> bytes:
        return generate_latest(self.registry)
