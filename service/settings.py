"""Service settings, from the environment (``FRAUDVAE_*``) through pydantic-settings."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; `fraudvae serve` options override the environment."""

    model_config = SettingsConfigDict(env_prefix="FRAUDVAE_", frozen=True, extra="ignore")

    model: Path | None = Field(None, description="saved model directory (fraudvae fit --model)")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch_rows: int = Field(4096, ge=1, description="rows gathered into one forward pass at most")
    # only while other requests are on their way in (read or decoded, or in the history store): a
    # request alone in the service is scored at once (the wait cost it 3.4 ms of 6.3)
    max_wait_ms: float = Field(2.0, ge=0, le=1000, description="how long a lone request waits for company that "
                                                                 "is on its way in")
    max_queue_rows: int = Field(65536, ge=1, description="rows waiting beyond this: 503 with Retry-After")
    max_queue_ms: float = Field(1000.0, gt=0, description="when the oldest waiting request has waited longer than "
                                "this, new ones get 503 with Retry-After at once (a latency budget)")
    max_request_rows: int = Field(10_000, ge=1, description="transactions in one request beyond this: 413")
    max_body_bytes: int = Field(16 << 20, ge=1024, description="request bodies above this: 413")
    api_keys: str | None = Field(None, description="comma-separated; when set, every path but /healthz and "
                                 "/readyz (and /metrics with public_metrics) needs one in X-API-Key")
    workers: int = Field(0, ge=0, description="server processes, each batching its own requests; 0: one per CPU "
                         "core (at most 8) on CPU, one on a GPU (every request shares its forward pass)")
    torch_threads: int = Field(1, ge=0, description="CPU threads per forward pass (0: torch's default); the "
                               "event loop needs the other cores")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503 when the queue is full")
    public_metrics: bool = Field(False, description="with API keys set, leave /metrics open (a cluster-internal "
                                 "scraper); otherwise every path but /healthz and /readyz needs a key")
    body_timeout_s: float = Field(30.0, gt=0, description="a request body not received in full within this many "
                                  "seconds of its first byte is answered 408 and the connection closed")
    max_body_bytes_in_flight: int = Field(64 << 20, ge=1024, description="request bytes being received at once, "
                                          "over all requests; beyond it 503 (bounds memory under stalled uploads)")
    header_timeout_s: float = Field(10.0, gt=0, description="a request's line and headers must arrive within this "
                                    "many seconds of the connection opening or the request starting; else closed")
    keep_alive_s: int = Field(5, ge=1, description="an idle keep-alive connection is closed after this many seconds")
    max_connections: int = Field(512, ge=1, description="concurrent connections and requests per worker; beyond "
                                 "them 503")
    shadow_model: Path | None = Field(None, description="a challenger model directory: every request is also "
                                      "scored by it, off the response path (fraudvae serve --shadow DIR)")
    shadow_log: Path | None = Field(None, description="append the challenger's scores here, a JSON line per row")
    monitor_rows: int = Field(10_000, ge=100, description="the rolling window of recent scored rows (over all "
                              "workers) that GET /monitor and the monitoring gauges measure")
    state_dir: Path | None = Field(None, description="the embedded history state store's folder (models with "
                                   "entity columns): default $XDG_STATE_HOME/fraudvae, else .fraudvae-state in the "
                                   "working directory")
    state_url: str | None = Field(None, pattern=r"^rediss?://", description="a Redis URL (redis://host:port/db): the "
                                  "history state store shared by several hosts, instead of the embedded one")
    gc_young: int = Field(50_000, ge=0, description="container allocations between two collections of Python's "
                          "young generation while serving (0: Python's own 700); a 1000-row request makes about "
                          "2,000 that die young")
    shutdown_timeout_s: float = Field(25.0, gt=0, description="on SIGTERM, in-flight requests get this long to "
                                      "finish (below Kubernetes' 30 s grace period), then what is left is closed")

    @field_validator("api_keys")
    @classmethod
    def _keys_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not [k for k in v.split(",") if k.strip()]:
            raise ValueError("FRAUDVAE_API_KEYS is set but holds no key")
        return v

    def worker_count(self, cuda: bool) -> int:
        if self.workers:
            return self.workers
        return 1 if cuda else max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                 else os.cpu_count() or 1))

    def to_env(self) -> dict[str, str]:
        """These settings as ``FRAUDVAE_*`` variables: how worker processes receive them."""
        return {f"FRAUDVAE_{k.upper()}": str(v) for k, v in self.model_dump().items() if v is not None}

    def keys(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in (self.api_keys or "").split(",") if k.strip())

    def uvicorn_options(self) -> dict:
        """The server's own limits: idle keep-alive, concurrency cap (503 past it), shutdown deadline."""
        options: dict[str, object] = {"timeout_keep_alive": self.keep_alive_s,
                                      "limit_concurrency": self.max_connections,
                                      "timeout_graceful_shutdown": self.shutdown_timeout_s}
        try:  # httptools, as uvicorn[standard] installs it: with a deadline for headers
            from .protocol import HeaderDeadlineProtocol

            options["http"] = HeaderDeadlineProtocol
        except ImportError:
            pass
        return options
