"""``POST /score``, the hot path, as a plain ASGI endpoint.

FastAPI's per-request machinery (dependency solving, request objects, response models) costs more
than scoring a row does, so the one endpoint in the payment path is written against ASGI directly;
the rest of the API is ordinary FastAPI, and `schemas.score_path` documents this endpoint with the others.
Every outcome is counted in the metrics, and every error is answered by `errors.answer`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from fraudvae import FraudVAE, Reason, StateStore

from .batching import Batch, Batcher
from .errors import ClientGone, ServiceError, error_body, to_service_error
from .history import StoreQueue
from .metrics import Metrics
from .monitoring import Monitor
from .schemas import RequestDecoder, dumps
from .settings import Settings
from .shadow import Shadow

log = logging.getLogger("service")
JSON_HEADERS = [(b"content-type", b"application/json")]
# the entities held are counted at most this often, off the requests' path (a count reads the whole
# store: SQLite's index, a SCAN of Redis's keys)
ENTITIES_EVERY_S = 30.0
ENCODE_EARLY_ROWS = 64  # a request this large is encoded by the endpoint, not in the batch


@dataclass(frozen=True)
class Ready:
    """What serving needs, all of it, built by the lifespan once the model is loaded and warm."""

    detector: FraudVAE
    batcher: Batcher
    decoder: RequestDecoder
    metrics: Metrics
    monitor: Monitor
    shadow: Shadow | None = None  # a challenger scoring the same requests, off the response path
    store: StateStore | None = None  # the entities' history, for a model with entity columns
    history: StoreQueue | None = None  # requests' transactions applied to `store` together


@dataclass
class Runtime:
    """What the endpoints share: the settings and keys from the start, the `Ready` state once the
    lifespan has built it (None before and after)."""

    settings: Settings
    keys: tuple[bytes, ...] = field(default=())
    state: Ready | None = None
    body_bytes_in_flight: int = 0  # bytes of request bodies being received now, over all requests

    def ready(self) -> Ready:
        """The ready state, or 503: the one readiness check of every endpoint."""
        if self.state is None:
            raise ServiceError(503, "the model is not loaded yet", headers={"Retry-After": "1"})
        return self.state


def check_key(keys: tuple[bytes, ...], given: bytes | None) -> None:
    """Raise 401 unless `given` is one of `keys` (no keys configured: open). Every key is compared,
    in constant time, so the time taken tells nothing about which one nearly matched."""
    if not keys:
        return
    matches = [hmac.compare_digest(given or b"", k) for k in keys]
    if not any(matches):
        raise ServiceError(401, "missing or wrong X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})


def api_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The request's X-API-Key; two of them are refused (400), never read one way here and another
    way elsewhere."""
    given = [v for k, v in headers if k.lower() == b"x-api-key"]
    if len(given) > 1:
        raise ServiceError(400, f"{len(given)} X-API-Key headers; send exactly one")
    return given[0] if given else None


async def send_answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def error_answer(e: ServiceError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    headers = JSON_HEADERS + [(k.lower().encode(), v.encode()) for k, v in (e.headers or {}).items()]
    return e.status, dumps(error_body(e)), headers


class ScoreEndpoint:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._counted_at = -ENTITIES_EVERY_S  # when the entities held were last counted (monotonic)
        self._counting: asyncio.Task | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        t = time.perf_counter()
        try:
            status, body, headers = 200, await self._score(scope, receive), JSON_HEADERS
        except Exception as e:  # every failure becomes an answer here, never a dropped connection
            status, body, headers = error_answer(to_service_error(e, self.rt.settings.retry_after_s))
        await send_answer(send, status, body, headers)
        state = self.rt.state
        if state is not None:
            state.metrics.on_answer("/score", status, time.perf_counter() - t)

    async def _score(self, scope: dict, receive: Any) -> bytes:
        rt, settings = self.rt, self.rt.settings
        if scope["method"] != "POST":
            raise ServiceError(405, f"{scope['method']} /score is not allowed; send POST", headers={"Allow": "POST"})
        explain = explain_option(scope.get("query_string", b""))
        headers = dict(scope["headers"])
        check_key(rt.keys, api_key(scope["headers"]))
        state = rt.ready()
        kind, _, params = headers.get(b"content-type", b"").decode("latin-1").partition(";")
        kind = kind.strip().lower()
        if kind != "application/json" and not kind.endswith("+json"):
            raise ServiceError(415, f"content type must be application/json, got {kind or 'none'}")
        charset = _charset(params)
        if charset not in (None, "utf-8", "utf8"):
            raise ServiceError(415, f"charset {charset} is not supported; send UTF-8 (JSON is UTF-8)")
        encoding = headers.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise ServiceError(415, f"content encoding {encoding!r} is not supported; send gzip or none")
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise ServiceError(413, f"the body is {int(declared)} bytes; at most {settings.max_body_bytes} allowed")
        state.batcher.arriving += 1  # a batch about to be scored may wait for this one
        try:
            body = await self._read_body(receive)
            big = encoding == "gzip" or len(body) > OFF_LOOP_BYTES  # big work off the event loop: others keep going
            if big:
                batch = await asyncio.to_thread(self._decode, state.decoder, body, encoding)
            else:
                batch = self._decode(state.decoder, body, encoding)
            if state.history is not None:  # history features, applied in the shared store
                batch.columns.update(await state.history.apply(batch))
                self._count_entities(state)
            # a large request is encoded here, as soon as its columns are complete, while its values are
            # in the cache (small ones are encoded in the batch, together)
            if batch.n >= ENCODE_EARLY_ROWS:
                det = state.detector
                batch = await asyncio.to_thread(batch.encode, det) if big else batch.encode(det)
        finally:
            state.batcher.arriving -= 1
        scores = await state.batcher.score(batch)
        det, ids = state.detector, batch.ids
        if not np.isfinite(scores.score).all():  # never a NaN in a 200: a model fault, answered as ours
            log.error("non-finite score from model %s; request not answered with scores", det.version_)
            raise ServiceError(500, "internal error: the model gave a non-finite score; the request was not scored")
        state.metrics.on_scored(scores.score, scores.flag)
        state.monitor.add(scores)
        if state.shadow is not None:
            state.shadow.submit(batch, scores)
        results = [{"score": s, "flag": f, "p_value": p, "top_features": top, "id": i} for s, f, p, top, i in
                   zip(scores.score.tolist(), scores.flag.tolist(), scores.p_value.tolist(),
                       scores.top_features.tolist(), ids, strict=True)]
        if explain:  # reason codes for the flagged rows (a pass of their own, off the event loop)
            flagged = np.flatnonzero(scores.flag).tolist()
            reasons = await asyncio.to_thread(reason_codes, det, batch, flagged) if flagged else []
            for result in results:
                result["reasons"] = None
            for i, row in zip(flagged, reasons, strict=True):
                results[i]["reasons"] = [r.to_dict() for r in row]
        return dumps({"model_version": det.version_, "threshold": det.threshold_.value, "results": results})

    def _count_entities(self, state: Ready) -> None:
        """Refresh the entities-held gauge in the background, at most every ENTITIES_EVERY_S: no request
        waits for the count, and a count that fails is a warning, never a request's error."""
        now = time.monotonic()
        if now - self._counted_at < ENTITIES_EVERY_S or (self._counting is not None and not self._counting.done()):
            return
        self._counted_at = now
        assert state.history is not None  # called only where the model has history
        store, metrics = state.history.store, state.metrics

        async def count() -> None:
            try:
                metrics.on_entities(await asyncio.to_thread(store.entities))
            except Exception as e:  # the store's faults reach the requests themselves
                log.warning("could not count the entities the state store holds: %s", e)

        self._counting = asyncio.get_running_loop().create_task(count(), name="fraudvae-entities")

    def _decode(self, decoder: RequestDecoder, body: bytes, encoding: str) -> Batch:
        if encoding == "gzip":
            body = gunzip(body, self.rt.settings.max_body_bytes)
        return decoder.decode(body)

    async def _read_body(self, receive: Any) -> bytes:
        """The whole body, within the size limit, the time limit (408) and the budget of bytes being
        received by all requests at once (503: a crowd of stalled uploads cannot exhaust memory)."""
        rt, settings = self.rt, self.rt.settings
        chunks, size = [], 0
        try:
            # one timer for the whole body (asyncio.wait_for would wrap every receive in a task)
            async with asyncio.timeout(settings.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    rt.body_bytes_in_flight += len(chunk)
                    if size > settings.max_body_bytes:
                        raise ServiceError(413, f"the body exceeds {settings.max_body_bytes} bytes")
                    if rt.body_bytes_in_flight > settings.max_body_bytes_in_flight:
                        raise ServiceError(503, "too many request bytes being received at once; retry shortly",
                                           headers={"Retry-After": str(settings.retry_after_s), "Connection": "close"})
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise ServiceError(408, f"the body did not arrive within {settings.body_timeout_s:g} s",
                               headers={"Connection": "close"}) from None
        finally:
            rt.body_bytes_in_flight -= size


def explain_option(query: bytes) -> bool:
    """``?explain=true`` asks for reason codes (off by default: the response stays small). Any other
    query parameter, or a value that is no true/false word, is a 422 naming it."""
    explain, seen = False, False
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name != "explain":
            raise ServiceError(422, f"unknown query parameter {name!r}; /score takes only 'explain'", field=name)
        if seen:
            raise ServiceError(422, "query parameter 'explain' is given more than once (ambiguous: give it once)",
                               field="explain")
        seen = True
        word = value.strip().lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise ServiceError(422, f"query parameter 'explain' must be true or false, got {value[:40]!r}",
                               field="explain")
        explain = word in TRUE_WORDS
    return explain


TRUE_WORDS, FALSE_WORDS = frozenset({"true", "1", "yes", ""}), frozenset({"false", "0", "no"})


def reason_codes(det: FraudVAE, batch: Batch, rows: list[int]) -> list[list[Reason]]:
    """Reason codes of some rows of a decoded request."""
    return det.reason_codes({name: [values[i] for i in rows] for name, values in batch.columns.items()})


OFF_LOOP_BYTES = 256 << 10  # bodies above this are decoded in a thread


def _charset(params: str) -> str | None:
    for part in params.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body, decompressed to at most `limit` bytes (a compression bomb gets 413, not memory)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise ServiceError(400, f"the body is not valid gzip ({e})") from None
    if len(out) > limit or d.unconsumed_tail:
        raise ServiceError(413, f"the decompressed body exceeds {limit} bytes")
    if not d.eof:
        raise ServiceError(400, "the gzip body is truncated")
    return out
