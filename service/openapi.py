"""The contract of ``POST /score`` as documented: the response models and the OpenAPI path item.

`ScoreEndpoint` is plain ASGI (FastAPI does not see it), so its OpenAPI entry is written here and
joined to FastAPI's document; `tests/test_service.py` checks real answers against these models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from fraudvae import FraudVAE

if TYPE_CHECKING:
    from .scoring import Runtime


class Likely(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str
    probability: float


class ReasonCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    value: str = Field(description="the transaction's value, as a reviewer reads it ('missing' for a gap)")
    expected: str = Field(description="what the model expected given the rest of the row, in words")
    excess_nats: float = Field(description="how far this column's part of the score is above its typical part")
    text: str = Field(description="column, value and expectation in one line: 'amount 4,800 (typical 20 to 90)'")
    typical_low: float | None = Field(None, description="a number's typical range, in the data's units")
    typical_high: float | None = None
    likely: list[Likely] | None = Field(None, description="a category's or flag's likeliest values")


class ScoreResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score: float = Field(description="negative ELBO in nats; higher = more suspicious")
    flag: bool = Field(description="score > threshold")
    p_value: float = Field(description="share of validation normals scoring at or above this one")
    top_features: list[str] = Field(description="the columns most unusual for this row, most unusual first")
    id: str | int | None = Field(None, description="the transaction's id field, echoed (a string of at most "
                                                   "256 characters, a 64-bit integer, or null)")
    reasons: list[ReasonCode] | None = Field(None, description="with ?explain=true: for a flagged transaction, "
                                                             "its most unusual columns and what was expected; null "
                                                             "for the others; absent without the option")


class ScoreResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_version: str
    threshold: float
    results: list[ScoreResult]


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int
    message: str
    index: int | None = Field(None, description="position of the offending transaction in the request")
    field: str | None = Field(None, description="the offending column")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


def document_score(api: FastAPI, rt: Runtime) -> None:
    """FastAPI's OpenAPI document with ``/score`` added; once the model is loaded, the request body
    lists its columns."""
    documented: list[bool] = []

    def openapi() -> dict:
        state = rt.state
        if api.openapi_schema is None or (state is not None and not any(documented)):
            doc = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
            path, components = score_path(state.detector if state else None, rt.settings.max_request_rows,
                                          bool(rt.keys))
            doc["paths"] = {"/score": path, **doc["paths"]}
            doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
            documented.append(state is not None)  # once ready, the request body lists the served model's columns
            api.openapi_schema = doc
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def score_path(detector: FraudVAE | None, max_rows: int, keyed: bool) -> tuple[dict, dict]:
    """The OpenAPI path item of ``POST /score`` and the component schemas it refers to.

    With a model loaded, each transaction's schema lists the model's columns and their types."""
    ref = "#/components/schemas/{model}"
    components: dict[str, dict] = {}
    for model in (ScoreResponse, ErrorResponse):
        schema = model.model_json_schema(ref_template=ref)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    props: dict[str, dict] = {}
    required: list[str] = []
    if detector is not None:
        kinds = {"numeric": {"type": ["number", "null"]},
                 "binary": {"type": ["boolean", "number", "string", "null"]},
                 "categorical": {"type": ["string", "number", "boolean", "null"]},
                 "time": {"type": ["string", "number", "null"]}}
        for col in detector.schema_.columns:
            props[col.name] = {**kinds[col.role], "description": f"{col.role} column; null = missing"}
        props[detector.schema_.id_column or "id"] = {"description": "optional: echoed back in the result"}
        required = detector.schema_.names()
    transaction = {"type": "object", "properties": props, "additionalProperties": True,
                   "description": "one transaction, keyed by the training file's column names",
                   **({"required": required} if required else {})}
    components["ScoreRequest"] = {
        "type": "object", "required": ["transactions"],
        "properties": {"transactions": {"type": "array", "items": transaction, "minItems": 1, "maxItems": max_rows}}}

    def error(description: str) -> dict:
        return {"description": description,
                "content": {"application/json": {"schema": {"$ref": ref.format(model="ErrorResponse")}}}}

    responses = {
        "200": {"description": "one result per transaction, in order",
                "content": {"application/json": {"schema": {"$ref": ref.format(model="ScoreResponse")}}}},
        "400": error("the body is not JSON"),
        "413": error("too many transactions, or a body over the size limit"),
        "415": error("the content type is not application/json"),
        "422": error("a transaction or value that cannot be scored (index and field named)"),
        "503": error("overloaded (Retry-After) or the model is not loaded yet"),
    }
    if keyed:
        responses["401"] = error("missing or wrong X-API-Key")
    operation: dict[str, object] = {
        "summary": "Score transactions",
        "description": "Score every transaction: one result per transaction, in order; flag = score > threshold. "
                       "Rows of concurrent requests are scored together in one forward pass.",
        "operationId": "score",
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": ref.format(model="ScoreRequest")}}}},
        "responses": responses,
    }
    parameters = [{"name": "explain", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
                   "description": "add reason codes to the flagged transactions' results"}]
    if keyed:
        parameters.append({"name": "X-API-Key", "in": "header", "required": True, "schema": {"type": "string"}})
    operation["parameters"] = parameters
    return {"post": operation}, components
