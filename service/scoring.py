"""``POST /score``, the hot path, as a plain ASGI endpoint.

FastAPI's per-request machinery (dependency solving, request objects, response models) costs more
than scoring a row does, so the one endpoint in the payment path is written against ASGI directly;
the rest of the API is ordinary FastAPI, and `schemas.score_path` documents this endpoint with the others.
Every outcome is counted in the metrics, and every error is answered by `errors.answer`.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fraudvae import FraudVAE

from .batching import Batcher
from .errors import ClientGone, ServiceError, error_body, to_service_error
from .metrics import Metrics
from .schemas import RequestDecoder, dumps
from .settings import Settings

log = logging.getLogger("service")
JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass
class Runtime:
    """What the lifespan sets up and the endpoints share."""

    settings: Settings
    detector: FraudVAE | None = None
    batcher: Batcher | None = None
    metrics: Metrics | None = None
    decoder: RequestDecoder | None = None
    ready: bool = False
    keys: tuple[bytes, ...] = field(default=())


def check_key(keys: tuple[bytes, ...], given: bytes | None) -> None:
    """Raise 401 unless `given` is one of `keys` (no keys configured: open). Every key is compared,
    in constant time, so the time taken tells nothing about which one nearly matched."""
    if not keys:
        return
    matches = [hmac.compare_digest(given or b"", k) for k in keys]
    if not any(matches):
        raise ServiceError(401, "missing or wrong X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})


class ScoreEndpoint:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        t = time.perf_counter()
        try:
            status, body, headers = 200, await self._score(scope, receive), JSON_HEADERS
        except Exception as e:  # every failure becomes an answer here, never a dropped connection
            err = to_service_error(e, self.rt.settings.retry_after_s)
            status, body = err.status, dumps(error_body(err))
            headers = JSON_HEADERS + [(k.lower().encode(), v.encode()) for k, v in (err.headers or {}).items()]
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        m = self.rt.metrics
        if m is not None:
            m.latency.labels("/score").observe(time.perf_counter() - t)
            m.responses.labels("/score", str(status)).inc()

    async def _score(self, scope: dict, receive: Any) -> bytes:
        rt, settings = self.rt, self.rt.settings
        headers = dict(scope["headers"])
        check_key(rt.keys, headers.get(b"x-api-key"))
        if not rt.ready:
            raise ServiceError(503, "the model is not loaded yet", headers={"Retry-After": "1"})
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
        if kind != "application/json" and not kind.endswith("+json"):
            raise ServiceError(415, f"content type must be application/json, got {kind or 'none'}")
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise ServiceError(413, f"the body is {int(declared)} bytes; at most {settings.max_body_bytes} allowed")
        batch = rt.decoder.decode(await _read_body(receive, settings.max_body_bytes))
        scores = await rt.batcher.score(batch)
        if not np.isfinite(scores.score).all():  # never a NaN in a 200: a model fault, answered as ours
            log.error("non-finite score from model %s; request not answered with scores", rt.detector.version_)
            raise ServiceError(500, "internal error: the model gave a non-finite score; the request was not scored")
        rt.metrics.on_scored(scores.score, scores.flag)
        det, ids = rt.detector, batch.ids
        results = [{"score": s, "flag": f, "p_value": p, "top_features": top, "id": i} for s, f, p, top, i in
                   zip(scores.score.tolist(), scores.flag.tolist(), scores.p_value.tolist(),
                       scores.top_features.tolist(), ids, strict=True)]
        return dumps({"model_version": det.version_, "threshold": det.threshold_.value, "results": results})


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, f"the body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
