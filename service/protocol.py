"""uvicorn's HTTP protocol (httptools) with a deadline for a request's headers.

uvicorn times out idle keep-alive connections, but a client that sends half its headers and
stops holds its connection (and a slot under the connection cap) for as long as it likes. Here a
connection whose request line and headers are not complete ``FRAUDVAE_HEADER_TIMEOUT_S`` seconds after
the connection opened, or after the request's first byte, is closed. The body has its own deadline
(`scoring.ScoreEndpoint`)."""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .settings import Settings


@cache
def header_timeout_s() -> float:
    """From the settings (the environment: how `fraudvae serve` passes them to worker processes)."""
    return Settings().header_timeout_s


class HeaderDeadlineProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout_s()
        self.header_timer: asyncio.TimerHandle | None = None

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self.header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_slow(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.header_timer is None:
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)
