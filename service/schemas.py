"""Request and response shapes: parsed as whole batches, documented in OpenAPI.

Per-row pydantic models cost tens of microseconds a row; a request is instead parsed once with
orjson and its rows are checked column by column by the library (`FraudVAE.encode_records`), with
the same strictness: numbers must be finite JSON numbers, NaN and Infinity are refused, ``null`` is
a missing value. The OpenAPI document still lists every column the model reads, with its type.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import BaseModel, Field

from fraudvae import FraudVAE
from .errors import ServiceError


class ScoreResult(BaseModel):
    score: float = Field(description="negative ELBO in nats; higher = more suspicious")
    flag: bool = Field(description="score > threshold")
    p_value: float = Field(description="share of validation normals scoring at or above this one")
    top_features: list[str] = Field(description="the columns most unusual for this row, most unusual first")
    id: Any = Field(None, description="the transaction's id field, echoed")


class ScoreResponse(BaseModel):
    model_version: str
    threshold: float
    results: list[ScoreResult]


class ErrorDetail(BaseModel):
    status: int
    message: str
    index: int | None = Field(None, description="position of the offending transaction in the request")
    field: str | None = Field(None, description="the offending column")


class ErrorResponse(BaseModel):
    error: ErrorDetail


def dumps(body: Any) -> bytes:
    return orjson.dumps(body)


def parse_transactions(body: bytes, max_rows: int) -> list:
    """The ``transactions`` list of a request body, envelope checked; rows are checked later."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        doc = _lenient(body, e)
    if not isinstance(doc, dict):
        raise ServiceError(422, f"the body must be a JSON object with a 'transactions' list, got {_kind(doc)}")
    if "transactions" not in doc:
        raise ServiceError(422, "the body has no 'transactions' field", field="transactions")
    rows = doc["transactions"]
    if not isinstance(rows, list):
        raise ServiceError(422, f"'transactions' must be a list of objects, got {_kind(rows)}", field="transactions")
    if not rows:
        raise ServiceError(422, "'transactions' is empty: send at least one transaction", field="transactions")
    if len(rows) > max_rows:
        raise ServiceError(413, f"{len(rows)} transactions in one request; at most {max_rows} allowed",
                           field="transactions")
    return rows


def _lenient(body: bytes, strict_error: Exception) -> Any:
    """Parse JSON that only breaks the strict grammar with NaN, Infinity or a number overflowing a
    double, so that the row check can name the transaction and column; anything else is a 400."""
    def constant(name: str) -> float:
        return float(name)  # NaN, Infinity, -Infinity: refused with their place by the row check

    try:
        return json.loads(body, parse_constant=constant)
    except (ValueError, RecursionError):
        raise ServiceError(400, f"the body is not valid JSON: {strict_error}") from None


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def request_schema(detector: FraudVAE, max_rows: int) -> dict:
    """OpenAPI request body for ``POST /score`` listing the model's columns and their types."""
    kinds = {"numeric": {"type": ["number", "null"]},
             "binary": {"type": ["boolean", "number", "string", "null"]},
             "categorical": {"type": ["string", "number", "boolean", "null"]}}
    schema = detector.schema_
    props: dict[str, dict] = {}
    for col in schema.columns:
        props[col.name] = {**kinds[col.role], "description": f"{col.role} column; null = missing"}
    id_field = schema.id_column or "id"
    props[id_field] = {"description": "optional: echoed back in the result"}
    transaction = {"type": "object", "properties": props, "required": schema.names(), "additionalProperties": True}
    body = {"type": "object", "required": ["transactions"],
            "properties": {"transactions": {"type": "array", "items": transaction, "minItems": 1,
                                            "maxItems": max_rows}}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}
