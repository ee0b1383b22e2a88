"""The application: `create_app` builds it; `app` is the one uvicorn finds.

    FRAUDVAE_MODEL=models/v1 uvicorn service.app:app      or      fraudvae serve --model models/v1

``POST /score`` is served by the plain-ASGI `ScoreEndpoint`; everything else (probes, metrics,
model description, OpenAPI docs) by FastAPI.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Response

from fraudvae import ConfigError, Encoded, FraudVAE, ModelFileError, StateStore, open_state_store

from .batching import Batcher
from .errors import ServiceError, install
from .history import StoreQueue
from .labels import add_labels_route
from .metrics import Metrics
from .monitoring import Monitor
from .openapi import ErrorResponse, document_score
from .schemas import RequestDecoder
from .scoring import Ready, Runtime, ScoreEndpoint, api_key, check_key, error_answer, send_answer
from .settings import Settings
from .shadow import Shadow, check_schemas

log = logging.getLogger("service")
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "the model is not loaded yet"}}


def load_detector(settings: Settings) -> FraudVAE:
    """The model the settings name, or `ModelFileError`."""
    if settings.model is None:
        raise ModelFileError("no model directory: set FRAUDVAE_MODEL or pass --model")
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    return FraudVAE.load(settings.model, device=settings.device)


def open_store(settings: Settings, det: FraudVAE) -> StateStore | None:
    """The history state store of a model with entity columns (None without): Redis with
    ``FRAUDVAE_STATE_URL``, else the embedded SQLite file in the state folder, seeded from the
    model's saved state when it holds nothing for the model's history specification."""
    history = det.history_
    if history is None:
        return None
    if settings.state_url:
        return open_state_store(history.spec, history, url=settings.state_url)
    folder = settings.state_dir or state_home()
    if settings.model is not None and Path(folder).resolve().is_relative_to(Path(settings.model).resolve()):
        raise ConfigError(f"the state folder {str(folder)!r} is inside the model directory, which may be read-only "
                          "and is the model's own: set FRAUDVAE_STATE_DIR elsewhere")
    return open_state_store(history.spec, history, folder=Path(folder))


def state_home() -> Path:
    """$XDG_STATE_HOME/fraudvae when set, else .fraudvae-state in the working directory."""
    xdg = os.environ.get("XDG_STATE_HOME")
    return Path(xdg) / "fraudvae" if xdg else Path.cwd() / ".fraudvae-state"


def warm_up(detector: FraudVAE) -> None:
    """One forward pass on placeholder rows, so the first request does not pay for lazy setup."""
    c, n = detector.model_config_, 8
    detector.score_encoded(Encoded(np.zeros((n, c.n_numeric), np.float32), np.ones((n, c.n_terms), np.float32),
                                   np.zeros((n, c.n_binary), np.float32),
                                   np.ones((n, len(c.cardinalities)), np.int64)))


class ScoringService:
    """The ASGI application: ``/score`` to the fast endpoint, everything else to FastAPI. With API
    keys set, every path but the probes (and ``/metrics`` with ``public_metrics``) needs a key; it is
    checked here, once, for all of them (``/score`` checks its own, to count the answer)."""

    def __init__(self, api: FastAPI, score: ScoreEndpoint, runtime: Runtime) -> None:
        self.api, self.score, self.rt = api, score, runtime
        self.public = {"/healthz", "/readyz"} | ({"/metrics"} if runtime.settings.public_metrics else set())

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/score":
            await self.score(scope, receive, send)
            return
        if scope["type"] == "http" and self.rt.keys and scope["path"] not in self.public:
            try:
                check_key(self.rt.keys, api_key(scope["headers"]))
            except ServiceError as e:
                await send_answer(send, *error_answer(e))
                return
        await self.api(scope, receive, send)


def create_app(settings: Settings | None = None, detector: FraudVAE | None = None) -> ScoringService:
    """The service. `detector` (already loaded) wins over ``settings.model``; without one, the
    model is loaded at startup and a bad model directory stops the startup."""
    settings = settings or Settings()
    rt = Runtime(settings, keys=tuple(k.encode() for k in settings.keys()))

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        det = detector if detector is not None else await asyncio.to_thread(load_detector, settings)
        await asyncio.to_thread(warm_up, det)
        # the queue gauge reads the batcher's queue (made next; read only once requests come)
        metrics = Metrics(_score_bounds(det), lambda: batcher.queued_rows, det.threshold_.value,
                          shadow_backlog=None if settings.shadow_model is None
                          else lambda: 0 if shadow is None else shadow.backlog_rows)
        batcher = Batcher(det, settings.max_batch_rows, settings.max_wait_ms / 1000, settings.max_queue_rows,
                          on_batch=metrics.on_batch, max_queue_s=settings.max_queue_ms / 1000)
        batcher.start()
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # several workers: the window spans them all
        monitor = Monitor(det, settings.monitor_rows, Path(shared) if shared else None)
        metrics.watch(monitor.report)
        shadow = None
        if settings.shadow_model is not None:  # checked by `fraudvae serve` before listening; again here
            challenger = await asyncio.to_thread(FraudVAE.load, settings.shadow_model, settings.device)
            check_schemas(det, challenger)
            await asyncio.to_thread(warm_up, challenger)
            shadow = Shadow(challenger, settings.shadow_log, settings.monitor_rows, metrics.on_shadow)
        store = await asyncio.to_thread(open_store, settings, det)
        history = None if store is None else StoreQueue(store, settings.max_batch_rows, metrics.on_store,
                                                        metrics.on_reseeds)
        rt.state = Ready(det, batcher, RequestDecoder(det, settings.max_request_rows), metrics, monitor, shadow, store,
                         history)
        # what startup made (torch, the models, pandas) lives as long as the process: out of the
        # collector's sight, a full collection no longer walks it (a 130 ms pause that set the p99)
        gc.freeze()
        # the young generation: freed by their reference counts, a request's objects need no
        # collection, yet at Python's threshold (700) a 1000-row request triggered 2.75 (0.74 ms of
        # its 13.6 ms); put back at shutdown (tests run many apps in one process)
        thresholds = gc.get_threshold()
        if settings.gc_young:
            gc.set_threshold(settings.gc_young, *thresholds[1:])
        # on uvicorn's own logger, so the line shows wherever uvicorn's startup lines do
        logging.getLogger("uvicorn.error").info(
            "model %s ready on %s; worker pid %d of %d%s", det.version_, det.device_, os.getpid(),
            settings.worker_count(cuda=det.device_.type == "cuda"),
            "" if shadow is None else f"; shadow model {shadow.detector.version_} ({settings.shadow_model})")
        try:
            yield
        finally:
            rt.state = None
            gc.set_threshold(*thresholds)
            await batcher.stop()
            if history is not None:
                await history.stop()
            monitor.close()
            if shadow is not None:
                await asyncio.to_thread(shadow.close)

    api = FastAPI(title="fraudvae", version="1", lifespan=lifespan, docs_url=None,
                  description="Scores card transactions with a variational autoencoder trained on normal ones. "
                              "Score = negative ELBO in nats, higher = more suspicious.")
    install(api)

    @api.get("/healthz")
    async def healthz() -> dict:
        """Alive: the process answers."""
        return {"status": "ok"}

    @api.get("/readyz", responses=NOT_READY)
    async def readyz() -> dict:
        """Ready: the model is loaded and warmed up (503 before)."""
        state = rt.ready()
        if state.store is not None:  # a store that does not answer: not ready (503), back when it is
            await asyncio.to_thread(state.store.ping)
        return {"status": "ready", "model_version": state.detector.version_}

    @api.get("/metrics", response_class=Response, responses=NOT_READY)
    async def metrics() -> Response:
        """Prometheus text format: latency, rows scored and flagged, batch sizes, queue depth, scores."""
        return Response(rt.ready().metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @api.get("/monitor", responses={401: {"model": ErrorResponse}, **NOT_READY})
    async def monitor_window() -> dict:
        """Is the threshold still honest? The latest FRAUDVAE_MONITOR_ROWS scored rows (over all
        workers): alert rate and its interval against the target, KS of the p-values against uniform,
        the columns that moved furthest (median contribution minus validation median, nats), and a
        status, ``ok`` or ``drift``."""
        state = rt.ready()
        shadow = {"shadow": state.shadow.report()} if state.shadow is not None else {}
        return {"model_version": state.detector.version_, **state.monitor.report(), **shadow}

    @api.get("/model", responses={401: {"model": ErrorResponse}, **NOT_READY})
    async def model() -> dict:
        """Version, schema, threshold and training metrics of the model being served."""
        det = rt.ready().detector
        return {"model_version": det.version_, "device": str(det.device_), **det.describe()}

    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    # Swagger UI's files come from an installed package, not a CDN: clusters often have no egress
    api.mount("/docs-static", StaticFiles(directory=str(swagger_ui_path)), name="docs-static")

    @api.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="fraudvae API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css", swagger_favicon_url="")

    add_labels_route(api, rt)
    document_score(api, rt)
    return ScoringService(api, ScoreEndpoint(rt), rt)


def _score_bounds(det: FraudVAE) -> np.ndarray:
    """Histogram buckets for served scores: validation quantiles, the threshold, and beyond it."""
    v = np.asarray(det.threshold_.validation_scores)
    q = np.quantile(v, [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
    t = det.threshold_.value
    spread = max(t - float(np.median(v)), 1e-6)
    return np.unique(np.r_[q, t, t + spread * np.array([0.5, 1, 2, 4, 8, 16])])


app = create_app()
