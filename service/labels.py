"""``POST /labels``: confirmed frauds (chargebacks, reviews) for transactions the service scored, counted
in their entities' history from when they are known (`fraudvae.history.labels`), in the same shared
state store as ``/score``: atomically, a label posted twice counts once, a changed label's change
counts from when it is known, and ids the store does not hold are answered, never dropped."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from fraudvae import read_labels

from .errors import ServiceError
from .openapi import ErrorResponse
from .scoring import Runtime

MAX_LABELS = 10_000  # labels in one request


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transaction_id: StrictStr | StrictInt = Field(description="the id the transaction was scored with")
    label: StrictBool | StrictInt | StrictStr = Field(description="1 (fraud) or 0; also true/false, fraud/normal")
    known_at: StrictStr | StrictInt | StrictFloat | None = Field(
        None, description="when the label became known, written as the model's time column; default: the "
                          "transaction's time plus the model's label delay (as `fraudvae score` reads a label column)")


class Labels(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[Label] = Field(min_length=1, max_length=MAX_LABELS)


class LabelsAnswer(BaseModel):
    model_version: str
    applied: int = Field(description="labels counted for the first time")
    changed: int = Field(description="labels that replaced another one (the change counts from when it is known)")
    unchanged: int = Field(description="the same label again (a retry): nothing changed")
    unknown: int = Field(description="labels for transaction ids the store does not hold (never scored, or "
                                     "older than the longest window plus the delay): nothing changed")
    unknown_ids: list[str] = Field(description="the first 100 of those ids")


def add_labels_route(api: FastAPI, rt: Runtime) -> None:
    @api.post("/labels", response_model=LabelsAnswer,
              responses={400: {"model": ErrorResponse}, 401: {"model": ErrorResponse},
                         422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
    async def labels(body: Labels) -> dict:
        """Count confirmed labels in the entities' history of a model fit with ``--label-delay``."""
        state = rt.ready()
        spec = state.detector.history_.spec if state.detector.history_ is not None else None
        batch = read_labels(spec, [x.transaction_id for x in body.labels], [x.label for x in body.labels],
                            [x.known_at for x in body.labels])
        if state.store is None:  # read_labels refuses a model without history first; a store always comes with it
            raise ServiceError(503, "no state store is open")
        outcome = (await asyncio.to_thread(state.store.label, batch)).to_dict()
        state.metrics.on_labels(outcome)
        return {"model_version": state.detector.version_, **outcome}
