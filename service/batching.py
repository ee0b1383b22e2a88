"""Cross-request batching: rows of concurrent requests share one forward pass.

Requests wait in a bounded queue (counted in rows). One worker takes everything waiting, up to
`max_batch_rows`, and scores it off the event loop in a single thread: encoding, forward pass,
p-values and top features for the whole batch at once. While a batch is being scored the next one
gathers by itself; a lone request waits at most `max_wait_s` for company, and only while other
requests are on their way in (`arriving`: read, decoded or in the history store), so a request
alone in the service is scored at once. Each request gets back
exactly its own rows: when a batch holds a bad request, the requests are encoded one by one so
only the bad one gets its error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import chain

import numpy as np

from fraudvae import Encoded, FraudVAE, FraudVAEError, Scores

from .errors import Overloaded

log = logging.getLogger("service")


@dataclass(frozen=True)
class Batch:
    """One request's transactions, column-wise: what the batcher gathers and the library encodes."""

    columns: dict[str, list]
    ids: list
    n: int
    encoded: Encoded | None = None  # the model's inputs, when the endpoint has encoded them already

    def encode(self, detector: FraudVAE) -> Batch:
        """The batch with its rows encoded (raises the library's error for a bad value)."""
        return replace(self, encoded=detector.encode_columns(self.columns, self.n))

    @staticmethod
    def concat(parts: list[Batch]) -> Batch:
        """Several requests' rows as one batch, in order (not encoded)."""
        if len(parts) == 1:
            return replace(parts[0], encoded=None)
        columns = {name: list(chain.from_iterable(p.columns[name] for p in parts)) for name in parts[0].columns}
        return Batch(columns, list(chain.from_iterable(p.ids for p in parts)), sum(p.n for p in parts))


@dataclass
class _Job:
    batch: Batch
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, detector: FraudVAE, max_batch_rows: int, max_wait_s: float, max_queue_rows: int,
                 on_batch: Callable[[int, int, float], None] | None = None, max_queue_s: float | None = None) -> None:
        self.detector = detector
        self.max_batch_rows, self.max_wait_s, self.max_queue_rows = max_batch_rows, max_wait_s, max_queue_rows
        # a latency budget: rows counted say nothing of how long they will take (a slow device, big
        # rows), the oldest request's wait does
        self.max_queue_s = max_queue_s
        self.on_batch = on_batch  # (rows, requests, seconds) after each batch: metrics
        self.queued_rows = 0
        self.arriving = 0  # requests the endpoint is reading or preparing: company that is coming
        self._jobs: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fraudvae-score")
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fraudvae-batcher")

    async def stop(self) -> None:
        """Score what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def score(self, batch: Batch) -> Scores:
        """Scores of the batch's rows, in order. Raises `Overloaded`, or the library's error for bad rows."""
        if self._closing:
            raise Overloaded("the service is shutting down")
        if self.queued_rows and self.queued_rows + batch.n > self.max_queue_rows:
            raise Overloaded(f"{self.queued_rows} rows are waiting (limit {self.max_queue_rows})")
        if self.max_queue_s is not None and self._jobs:
            waited = time.perf_counter() - self._jobs[0].queued_at
            if waited > self.max_queue_s:
                raise Overloaded(f"requests have waited {waited * 1000:.0f} ms to be scored "
                                 f"(budget {self.max_queue_s * 1000:.0f} ms)")
        job = _Job(batch, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self.queued_rows += batch.n
        self._wake.set()
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # a lone request waits a little for company; requests that queued while the last
            # batch was scored have waited already
            if self.arriving and self.queued_rows < self.max_batch_rows and self.max_wait_s > 0 and not self._closing:
                waited = time.perf_counter() - self._jobs[0].queued_at
                if waited < self.max_wait_s:
                    await asyncio.sleep(self.max_wait_s - waited)
            batch: list[_Job] = []
            rows = 0
            while self._jobs and (not batch or rows + self._jobs[0].batch.n <= self.max_batch_rows):
                job = self._jobs.popleft()
                batch.append(job)
                rows += job.batch.n
            self.queued_rows -= rows
            t = time.perf_counter()
            try:
                outcomes = await loop.run_in_executor(self._executor, self._score_batch, [j.batch for j in batch])
            except Exception as e:  # not the rows' fault: every request of the batch learns of it
                log.exception("scoring a batch of %d rows failed", rows)
                outcomes = [e] * len(batch)
            if self.on_batch is not None:
                self.on_batch(rows, len(batch), time.perf_counter() - t)
            for job, outcome in zip(batch, outcomes, strict=True):
                if job.future.done():  # the client went away
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _score_batch(self, parts: list[Batch]) -> list[Scores | Exception]:
        """Runs in the scoring thread. One result per request: its `Scores` or its error. Requests
        the endpoint has encoded (large ones) are encoded already; the rest are encoded together."""
        errors: list[Exception | None] = [None] * len(parts)
        raw = [i for i, p in enumerate(parts) if p.encoded is None]
        pieces: list[Encoded] = []
        order: list[int] = []  # the requests whose rows `pieces` hold, in order
        if raw:
            try:
                whole = Batch.concat([parts[i] for i in raw])
                pieces.append(self.detector.encode_columns(whole.columns, whole.n))
                order += raw
            except FraudVAEError:  # some request is bad: find which, keep the others
                for i in raw:
                    try:
                        pieces.append(self.detector.encode_columns(parts[i].columns, parts[i].n))
                        order.append(i)
                    except FraudVAEError as e:
                        errors[i] = e
        for i, p in enumerate(parts):
            if p.encoded is not None:
                pieces.append(p.encoded)
                order.append(i)
        if not pieces:  # every request was bad
            return [e for e in errors if e is not None]
        # each request's rows, out of the one pass, back in the requests' order
        scores = self.detector.score_encoded(Encoded.concat(pieces))
        starts = np.cumsum([0] + [parts[i].n for i in order])
        mine = {i: scores.take(slice(starts[k], starts[k + 1])) for k, i in enumerate(order)}
        return [mine[i] if error is None else error for i, error in enumerate(errors)]
