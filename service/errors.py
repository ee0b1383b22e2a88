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

from fraudvae import DataError, FraudVAEError, ModelFileError, NotFittedError

log = logging.getLogger("service")


class ServiceError(Exception):
    """An answer other than 200, raised in the web layer only."""

    def __init__(self, status: int, message: str, *, index: int | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.index, self.field, self.headers = status, message, index, field, headers


# library errors: bad rows are the client's (422); a model that cannot be used is ours (503)
STATUS = ((DataError, 422), (NotFittedError, 503), (ModelFileError, 503), (FraudVAEError, 400))


def from_library(e: FraudVAEError) -> ServiceError:
    status = next(code for kind, code in STATUS if isinstance(e, kind))
    row = getattr(e, "row", None)
    return ServiceError(status, str(e), index=row if isinstance(row, int) else None, field=getattr(e, "column", None))


def answer(e: ServiceError) -> Response:
    body = {"error": {"status": e.status, "message": e.message, "index": e.index, "field": e.field}}
    return Response(orjson.dumps(body), status_code=e.status, headers=e.headers, media_type="application/json")


def install(app: FastAPI) -> None:
    """Route every exception type to `answer`; unknown ones are logged and answered 500 (a bug)."""

    async def service_error(request: Request, e: ServiceError) -> Response:
        return answer(e)

    async def library_error(request: Request, e: FraudVAEError) -> Response:
        return answer(from_library(e))

    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        return answer(ServiceError(e.status_code, str(e.detail), headers=getattr(e, "headers", None)))

    async def validation_error(request: Request, e: RequestValidationError) -> Response:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return answer(ServiceError(422, f"{where}: {first.get('msg', 'invalid request')}"))

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(FraudVAEError, library_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
