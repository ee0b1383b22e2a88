"""The FastAPI application: `create_app` builds it; `app` is the one uvicorn finds.

    FRAUDVAE_MODEL=models/v1 uvicorn service.app:app      or      fraudvae serve --model models/v1
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from fastapi import Depends, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

from fraudvae import Encoded, FraudVAE, FraudVAEError, ModelFileError
from .batching import Batcher, Overloaded
from .errors import ServiceError, from_library, install
from .metrics import Metrics
from .schemas import ErrorResponse, ScoreResponse, dumps, parse_transactions, request_schema
from .settings import Settings

log = logging.getLogger("service")
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 503)}


def load_detector(settings: Settings) -> FraudVAE:
    """The model the settings name, loaded and warmed up (one forward pass), or `ModelFileError`."""
    if settings.model is None:
        raise ModelFileError("no model directory: set FRAUDVAE_MODEL or pass --model")
    detector = FraudVAE.load(settings.model, device=settings.device)
    warm_up(detector)
    return detector


def warm_up(detector: FraudVAE) -> None:
    c = detector.model_config_
    n = 8
    detector.score_encoded(Encoded(np.zeros((n, c.n_numeric), np.float32), np.ones((n, c.n_numeric), np.float32),
                                   np.zeros((n, c.n_binary), np.float32),
                                   np.ones((n, len(c.cardinalities)), np.int64)))


def create_app(settings: Settings | None = None, detector: FraudVAE | None = None) -> FastAPI:
    """The service. `detector` (already loaded) wins over ``settings.model``."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        det = detector if detector is not None else await asyncio.to_thread(load_detector, settings)
        if detector is not None:
            warm_up(det)
        metrics = Metrics(_score_bounds(det), lambda: batcher.queued_rows, det.threshold_.value)
        batcher = Batcher(det, settings.max_batch_rows, settings.max_wait_ms / 1000, settings.max_queue_rows,
                          on_batch=metrics.on_batch)
        batcher.start()
        app.state.detector, app.state.batcher, app.state.metrics = det, batcher, metrics
        app.state.ready = True
        log.info("model %s ready on %s", det.version_, det.device_)
        try:
            yield
        finally:
            app.state.ready = False
            await batcher.stop()

    app = FastAPI(title="fraudvae", version="1", lifespan=lifespan,
                  description="Scores card transactions with a variational autoencoder trained on normal "
                              "ones. Score = negative ELBO in nats, higher = more suspicious.")
    app.state.ready = False
    app.state.settings = settings
    install(app)
    keys = tuple(k.encode() for k in settings.keys())

    def require_key(request: Request) -> None:
        if not keys:
            return
        given = request.headers.get("x-api-key", "").encode()
        # compare against every key, always: the time taken does not depend on which one matched
        ok = [hmac.compare_digest(given, k) for k in keys]
        if not any(ok):
            raise ServiceError(401, "missing or wrong X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})

    authorized = [Depends(require_key)]

    @app.post("/score", response_model=ScoreResponse, responses=ERRORS, dependencies=authorized,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}}}})
    async def score(request: Request) -> Response:
        """Score every transaction: one result per transaction, in order; flag = score > threshold."""
        t = time.perf_counter()
        status = 500
        try:
            response = await _score(request)
            status = 200
            return response
        except ServiceError as e:
            status = e.status
            raise
        except Overloaded as e:
            status = 503
            raise ServiceError(503, f"overloaded: {e}; retry shortly",
                               headers={"Retry-After": str(settings.retry_after_s)}) from None
        except FraudVAEError as e:  # answered by the handler in service.errors; counted here
            status = from_library(e).status
            raise
        finally:
            if app.state.ready:
                m: Metrics = app.state.metrics
                m.latency.labels("/score").observe(time.perf_counter() - t)
                m.responses.labels("/score", str(status)).inc()

    async def _score(request: Request) -> Response:
        if not app.state.ready:
            raise ServiceError(503, "the model is not loaded yet", headers={"Retry-After": "1"})
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json" and not kind.endswith("+json"):
            raise ServiceError(415, f"content type must be application/json, got {kind or 'none'}")
        records = parse_transactions(await _body(request, settings.max_body_bytes), settings.max_request_rows)
        det: FraudVAE = app.state.detector
        scores = await app.state.batcher.score(records)
        app.state.metrics.on_scored(scores.score, scores.flag)
        id_field = det.schema_.id_column or "id"
        ids = [r.get(id_field) for r in records]
        results = [{"score": s, "flag": f, "p_value": p, "top_features": top, "id": i} for s, f, p, top, i in
                   zip(scores.score.tolist(), scores.flag.tolist(), scores.p_value.tolist(),
                       scores.top_features.tolist(), ids, strict=True)]
        body = {"model_version": det.version_, "threshold": det.threshold_.value, "results": results}
        return Response(dumps(body), media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict:
        """Alive (the process answers)."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz() -> dict:
        """Ready: the model is loaded and warmed up (503 before)."""
        if not app.state.ready:
            raise ServiceError(503, "the model is not loaded yet", headers={"Retry-After": "1"})
        return {"status": "ready", "model_version": app.state.detector.version_}

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format."""
        if not app.state.ready:
            raise ServiceError(503, "the model is not loaded yet", headers={"Retry-After": "1"})
        return Response(app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/model", responses={401: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
             dependencies=authorized)
    async def model() -> dict:
        """Version, schema, threshold and training metrics of the model being served."""
        if not app.state.ready:
            raise ServiceError(503, "the model is not loaded yet", headers={"Retry-After": "1"})
        det: FraudVAE = app.state.detector
        return {"model_version": det.version_, "device": str(det.device_), **det.describe()}

    def openapi() -> dict:
        if app.openapi_schema is None or (app.state.ready and not app.state.__dict__.get("documented")):
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            if app.state.ready:  # the request body lists the served model's columns
                extra = request_schema(app.state.detector, settings.max_request_rows)
                schema["paths"]["/score"]["post"].update(extra)
                app.state.documented = True
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, f"the body is {int(declared)} bytes; at most {limit} allowed")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _score_bounds(det: FraudVAE) -> np.ndarray:
    """Histogram buckets for served scores: validation quantiles, the threshold, and beyond it."""
    v = np.asarray(det.threshold_.validation_scores)
    q = np.quantile(v, [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
    t = det.threshold_.value
    spread = max(t - float(np.median(v)), 1e-6)
    return np.unique(np.r_[q, t, t + spread * np.array([0.5, 1, 2, 4, 8, 16])])


app = create_app()
