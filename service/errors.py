"""Errors of the web layer and the one place where every error becomes an HTTP answer.

Every error answer has the same JSON body: ``{"error": {"status", "message", "index", "field"}}``,
``index`` being the transaction's position in the request and ``field`` its column, when known.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fraudvae import DataError, FraudVAEError, ModelFileError, NotFittedError, StateStoreError

log = logging.getLogger("service")


class ServiceError(Exception):
    """An answer other than 200, raised in the web layer only."""

    def __init__(self, status: int, message: str, *, index: int | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.index, self.field, self.headers = status, message, index, field, headers


class Overloaded(Exception):
    """The batcher's queue holds `max_queue_rows` rows already, or its oldest request has waited
    longer than the queueing budget: answer 503 at once."""


class ClientGone(Exception):
    """The client disconnected before its body arrived (answered 499 to nobody, for the metrics)."""


# library errors: bad rows are the client's (422); a model that cannot be used is ours (503)
STATUS = ((DataError, 422), (NotFittedError, 503), (ModelFileError, 503), (StateStoreError, 503),
          (FraudVAEError, 400))


def from_library(e: FraudVAEError) -> ServiceError:
    status = next(code for kind, code in STATUS if isinstance(e, kind))
    row = getattr(e, "row", None)
    retry = {"Retry-After": "1"} if isinstance(e, StateStoreError) else None  # the store may be back in a moment
    return ServiceError(status, str(e), index=row if isinstance(row, int) else None, field=getattr(e, "column", None),
                        headers=retry)


def to_service_error(e: Exception, retry_after_s: int) -> ServiceError:
    """Any exception as the answer it gets; an unexpected one is logged and answered 500 (a bug)."""
    if isinstance(e, ServiceError):
        return e
    if isinstance(e, StateStoreError):  # never a score with history missing: try again shortly
        log.warning("state store unavailable: %s", e)
        return ServiceError(503, f"{e}; retry shortly", headers={"Retry-After": str(retry_after_s)})
    if isinstance(e, FraudVAEError):
        return from_library(e)
    if isinstance(e, Overloaded):
        return ServiceError(503, f"overloaded: {e}; retry shortly", headers={"Retry-After": str(retry_after_s)})
    if isinstance(e, ClientGone):
        return ServiceError(499, "the client closed the connection")
    log.exception("request failed")
    return ServiceError(500, f"internal error ({type(e).__name__}); the request was not scored")


def _printable(text: str | None) -> str | None:
    """Text that JSON can carry: a message may quote the client's own bad value, lone surrogates
    (\\ud800) included, which no UTF-8 encoder accepts."""
    if text is None or text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(e: ServiceError) -> dict:
    return {"error": {"status": e.status, "message": _printable(e.message), "index": e.index,
                      "field": _printable(e.field)}}


def answer(e: ServiceError) -> Response:
    return Response(orjson.dumps(error_body(e)), status_code=e.status, headers=e.headers, media_type="application/json")


def install(app: FastAPI) -> None:
    """Route every exception type to `answer`; unknown ones are logged and answered 500 (a bug)."""

    # starlette types a handler as taking any Exception; each of these is registered for its own type
    async def service_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, ServiceError)
        return answer(e)

    async def library_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, FraudVAEError)
        return answer(from_library(e))

    async def http_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, StarletteHTTPException)
        return answer(ServiceError(e.status_code, str(e.detail), headers=getattr(e, "headers", None)))

    async def validation_error(request: Request, e: Exception) -> Response:
        assert isinstance(e, RequestValidationError)
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return answer(ServiceError(422, f"{where}: {first.get('msg', 'invalid request')}"))

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(FraudVAEError, library_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
