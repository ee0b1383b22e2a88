"""The batcher on its own: requests share forward passes, keep their own rows and errors, and the
queue refuses work beyond its bound."""

import asyncio
import time

import numpy as np
import pandas as pd
import pytest

from fraudvae import FraudVAE, SchemaError
from fraudvae_service.batching import Batch, Batcher
from fraudvae_service.errors import Overloaded


def batch_of(df: pd.DataFrame, det: FraudVAE) -> Batch:
    return Batch({c: df[c].astype(object).where(df[c].notna(), None).tolist() for c in det.schema_.names()},
                 [None] * len(df), len(df))


def test_concurrent_requests_share_a_pass_and_get_their_own_rows(fitted: FraudVAE, data: pd.DataFrame) -> None:
    cuts = np.cumsum([0] + [4 + i for i in range(12)])  # requests of different sizes
    parts = [data.iloc[cuts[i]:cuts[i + 1]] for i in range(12)]
    bad = batch_of(parts[5], fitted)
    bad.columns["amount"][3] = "lots"  # request 5 is bad at its row 3
    sizes = []

    async def run() -> list:
        b = Batcher(fitted, max_batch_rows=1000, max_wait_s=0.05, max_queue_rows=10_000,
                    on_batch=lambda rows, requests, s: sizes.append(requests))
        b.start()
        # large requests come encoded by the endpoint (every third here), the rest are encoded together
        jobs = [b.score(bad if i == 5 else batch_of(p, fitted).encode(fitted) if i % 3 == 0 else batch_of(p, fitted))
                for i, p in enumerate(parts)]
        out = await asyncio.gather(*jobs, return_exceptions=True)
        await b.stop()
        return out

    out = asyncio.run(run())
    assert max(sizes) > 1  # requests were scored together
    assert isinstance(out[5], SchemaError) and out[5].row == 3 and out[5].column == "amount"
    for i, p in enumerate(parts):
        if i != 5:
            assert np.allclose(out[i].score, fitted.score_samples(p), rtol=1e-5)


def test_a_full_queue_refuses_at_once(fitted: FraudVAE, data: pd.DataFrame) -> None:
    async def run() -> None:
        b = Batcher(fitted, max_batch_rows=10, max_wait_s=0.2, max_queue_rows=20)
        b.start()
        first = asyncio.ensure_future(b.score(batch_of(data.iloc[:15], fitted)))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await b.score(batch_of(data.iloc[:10], fitted))
        assert len((await first).score) == 15  # the accepted one is still answered
        await b.stop()

    asyncio.run(run())


def test_a_request_is_refused_once_the_queue_is_slower_than_its_budget(fitted: FraudVAE, data: pd.DataFrame,
                                                                       monkeypatch) -> None:
    """Rows counted say nothing of how long they take: with a slow forward pass the oldest waiting
    request's age passes the budget, and new requests are refused at once; accepted ones are answered."""
    import time

    slow = fitted.score_encoded

    def score_slowly(encoded):
        time.sleep(0.3)
        return slow(encoded)

    async def run() -> None:
        b = Batcher(fitted, max_batch_rows=5, max_wait_s=0.0, max_queue_rows=10_000, max_queue_s=0.1)
        monkeypatch.setattr(b.detector, "score_encoded", score_slowly)
        b.start()
        accepted = [asyncio.ensure_future(b.score(batch_of(data.iloc[:5], fitted))) for _ in range(3)]
        await asyncio.sleep(0.2)  # the first is being scored, the others have waited 0.2 s > 0.1 s
        with pytest.raises(Overloaded, match="budget 100 ms"):
            await b.score(batch_of(data.iloc[:5], fitted))
        assert all(len(r.score) == 5 for r in await asyncio.gather(*accepted))
        await b.stop()

    asyncio.run(run())


def test_a_request_waits_for_company_only_while_company_is_on_its_way(fitted: FraudVAE, data: pd.DataFrame) -> None:
    """Alone in the service a request is scored at once, whatever `max_wait_s`; with another request
    being read (`arriving`), the batch waits for it and both share one pass."""
    sizes: list[int] = []

    async def run() -> tuple[float, list[int], int]:
        b = Batcher(fitted, max_batch_rows=1000, max_wait_s=0.5, max_queue_rows=10_000,
                    on_batch=lambda rows, requests, s: sizes.append(requests))
        b.start()
        t = time.perf_counter()
        await b.score(batch_of(data.iloc[:3], fitted))
        alone = time.perf_counter() - t
        sizes.clear()
        b.arriving = 1  # another request is being read
        first = asyncio.ensure_future(b.score(batch_of(data.iloc[:3], fitted)))
        await asyncio.sleep(0.05)
        b.arriving = 0
        second = await b.score(batch_of(data.iloc[3:5], fitted))
        await first
        await b.stop()
        return alone, sizes, len(second.score)

    alone, together, n = asyncio.run(run())
    assert alone < 0.25  # not the 0.5 s wait
    assert together == [2] and n == 2
