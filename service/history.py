"""History features for requests: concurrent requests' transactions applied to the shared state store
together.

Every store call is one atomic step that the workers take in turns (a SQLite write transaction, a
Redis WATCH/MULTI round), so its fixed cost (the lock, the round trips, the commit), not the rows,
bounds how many requests a second the service answers. Requests that arrive while a call is in
progress wait for the next one and go into it together: one call per turn instead of one per
request. A combined call is the same as the requests applied one after another in some order, which
is all concurrent requests were ever promised: rows are applied in time order (equal times in
arrival order), an id seen earlier in the same call gets that row's features, as a retry would.
When a combined call is refused for one request's bad rows, the requests are applied one by one so
only that one gets its error; a store fault reaches every request of the call.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fraudvae import FraudVAEError, StateStore, StateStoreError

from .batching import Batch

Features = dict[str, list[float | None]]


class StoreQueue:
    def __init__(self, store: StateStore, max_rows: int, on_call: Callable[[float, bool, int], None] | None = None,
                 on_reseed: Callable[[int], None] | None = None) -> None:
        self.store, self.max_rows = store, max_rows
        # (seconds, failed, rows computed again because another worker changed their entities) after each
        # store call: metrics
        self.on_call = on_call
        self.on_reseed = on_reseed  # (times) the store was found empty and seeded again: metrics
        self._reseeded = store.reseeded
        self._jobs: deque[tuple[Batch, asyncio.Future]] = deque()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fraudvae-state")
        self._draining: asyncio.Task | None = None

    async def apply(self, batch: Batch) -> Features:
        """The history features of the batch's rows (in order), applied to the store. Raises the
        library's error for bad rows, `StateStoreError` when the store fails."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._jobs.append((batch, future))
        if self._draining is None:
            self._draining = loop.create_task(self._drain(), name="fraudvae-state")
        return await future

    async def stop(self) -> None:
        if self._draining is not None:
            await self._draining
        self._executor.shutdown(wait=True)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._jobs:
                jobs = [self._jobs.popleft()]
                rows = jobs[0][0].n
                while self._jobs and rows + self._jobs[0][0].n <= self.max_rows:
                    rows += self._jobs[0][0].n
                    jobs.append(self._jobs.popleft())
                try:
                    outcomes = await loop.run_in_executor(self._executor, self._apply_all, [b for b, _ in jobs])
                except Exception as e:  # not the rows' fault: every request of the call learns of it
                    outcomes = [e] * len(jobs)
                for (_, future), outcome in zip(jobs, outcomes, strict=True):
                    if future.done():  # the client went away
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._draining = None

    def _call(self, batch: Batch) -> Features:
        t, redone = time.perf_counter(), self.store.redone
        try:
            features = self.store.apply(batch.columns, batch.n, batch.ids)
        except Exception:
            if self.on_call is not None:
                self.on_call(time.perf_counter() - t, True, 0)
            raise
        if self.on_call is not None:
            self.on_call(time.perf_counter() - t, False, self.store.redone - redone)
        if self.store.reseeded != self._reseeded and self.on_reseed is not None:
            self.on_reseed(self.store.reseeded - self._reseeded)
        self._reseeded = self.store.reseeded
        return features

    def _apply_all(self, parts: list[Batch]) -> list[Features | Exception]:
        """Runs in the store's thread. One outcome per request: its features or its error."""
        if len(parts) > 1:
            try:
                whole = self._call(Batch.concat(parts))
            except StateStoreError:
                raise
            except FraudVAEError:  # some request is bad: apply them one by one (the call changed nothing)
                pass
            else:
                out: list[Features | Exception] = []
                start = 0
                for p in parts:
                    out.append({name: values[start: start + p.n] for name, values in whole.items()})
                    start += p.n
                return out
        outcomes: list[Features | Exception] = []
        for p in parts:
            try:
                outcomes.append(self._call(p))
            except FraudVAEError as e:  # its own rows' error, or the store's while applying it
                outcomes.append(e)
        return outcomes
