"""Request and response shapes: parsed as whole batches, documented in OpenAPI.

Per-row pydantic models cost tens of microseconds a row; a request is instead parsed once with
orjson and its rows are checked column by column by the library (`FraudVAE.encode_records`), with
the same strictness: numbers must be finite JSON numbers, NaN and Infinity are refused, ``null`` is
a missing value. The OpenAPI document still lists every column the model reads, with its type.
"""

from __future__ import annotations

import json
import re
from operator import attrgetter
from typing import Any

import msgspec
import orjson
from pydantic import BaseModel, Field

from fraudvae import FraudVAE

from .batching import Batch
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


class RequestDecoder:
    """Decodes ``{"transactions": [...]}`` for one model straight into typed columns.

    msgspec checks every value's JSON type in C while it parses (a number where a number belongs,
    no NaN or Infinity, no number beyond a double), far faster than per-row pydantic models; the
    library then checks values (finite, known flags) column by column. A body msgspec refuses for
    its syntax is parsed again leniently, so that NaN or Infinity are reported with their place."""

    ROLE_TYPES: dict[str, Any] = {
        "numeric": float | None,
        "binary": bool | int | float | str | None,
        "categorical": str | int | float | bool | None,
    }

    def __init__(self, detector: FraudVAE, max_rows: int) -> None:
        self.detector, self.max_rows = detector, max_rows
        schema = detector.schema_
        self.names = schema.names()
        self.id_field = schema.id_column or "id"
        # attribute names f0, f1, ... renamed to the columns: any column name works
        fields = [(f"f{i}", self.ROLE_TYPES[c.role]) for i, c in enumerate(schema.columns)]
        rename = {f"f{i}": c.name for i, c in enumerate(schema.columns)}
        if self.id_field not in self.names:
            fields.append(("row_id", Any, None))
            rename["row_id"] = self.id_field
        self.id_attr = next(k for k, v in rename.items() if v == self.id_field)
        self.attr_of = {v: k for k, v in rename.items()}
        transaction = msgspec.defstruct("Transaction", fields, rename=rename)
        self.decoder = msgspec.json.Decoder(msgspec.defstruct("ScoreRequest", [("transactions", list[transaction])]))

    def decode(self, body: bytes) -> Batch:
        try:
            rows = self.decoder.decode(body).transactions
        except msgspec.ValidationError as e:
            raise _validation_error(str(e)) from None
        except msgspec.DecodeError as e:
            return self._lenient(body, e)
        self._check_size(len(rows))
        columns = {name: list(map(attrgetter(self.attr_of[name]), rows)) for name in self.names}
        return Batch(columns, list(map(attrgetter(self.id_attr), rows)), len(rows))

    def _check_size(self, n: int) -> None:
        if n == 0:
            raise ServiceError(422, "'transactions' is empty: send at least one transaction", field="transactions")
        if n > self.max_rows:
            raise ServiceError(413, f"{n} transactions in one request; at most {self.max_rows} allowed",
                               field="transactions")

    def _lenient(self, body: bytes, strict_error: Exception) -> Batch:
        """Bodies that break the JSON grammar: NaN, Infinity (and anything else)."""
        rows = parse_transactions(body, self.max_rows, strict_error)
        self.detector.encode_records(rows)  # raises, naming the record and column
        # valid after all (NaN in an id, say): served like any other request
        return Batch({name: [r[name] for r in rows] for name in self.names}, [r.get(self.id_field) for r in rows],
                     len(rows))


def _validation_error(message: str) -> ServiceError:
    """msgspec's "Expected `float | null`, got `str` - at `$.transactions[3].amount`" as a 422
    with the index and field picked out of the path."""
    what, _, path = message.partition(" - at `")
    path = path.rstrip("`")
    m = re.fullmatch(r"\$\.transactions\[(\d+)\](?:\.(.+))?", path)
    index = int(m.group(1)) if m else None
    field = m.group(2) if m else ("transactions" if path == "$.transactions" else None)
    missing = re.match(r"Object missing required field `(.+)`", what)
    if missing:
        field = missing.group(1)
    where = (f"transaction {index}" if index is not None else path or "body") + (f", field {field!r}" if field else "")
    return ServiceError(422, f"{where}: {what}", index=index, field=field)


def parse_transactions(body: bytes, max_rows: int, strict_error: Exception | None = None) -> list:
    """The ``transactions`` list of a body parsed leniently, envelope checked; rows checked later."""
    doc = _lenient(body, strict_error or ValueError("invalid JSON"))
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
                 "categorical": {"type": ["string", "number", "boolean", "null"]}}
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
    operation = {
        "summary": "Score transactions",
        "description": "Score every transaction: one result per transaction, in order; flag = score > threshold. "
                       "Rows of concurrent requests are scored together in one forward pass.",
        "operationId": "score",
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": ref.format(model="ScoreRequest")}}}},
        "responses": responses,
    }
    if keyed:
        operation["parameters"] = [{"name": "X-API-Key", "in": "header", "required": True,
                                    "schema": {"type": "string"}}]
    return {"post": operation}, components
