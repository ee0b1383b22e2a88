"""Labels that arrive after their transactions were scored (the service's ``POST /labels``:
chargebacks, analysts' reviews), for a model that keeps confirmed frauds as history
(`fraudvae.history.risk`).

A state store keeps, for each transaction id it scored, a record: its time, its entity keys and the
label counted for it so far (with the time that label became known). Kept as long as the longest
window plus the delay: a label known later would no longer reach any window. A label for a known id:
- first label: pending for each of the transaction's entities, known at `known_at` (default: the
  transaction's time plus the model's delay, as a label column is read in a file), never before
  the transaction;
- the same label again (a retry): nothing changes;
- another label (a correction): the change (+1 or -1 frauds, no new label counted) is pending
  from its `known_at`, never before the label it replaces: what was known stays as it was known.
A label for an id the store does not hold is answered as unknown and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fraudvae import readers as read
from fraudvae.errors import ConfigError, SchemaError
from fraudvae.history.features import seconds
from fraudvae.history.risk import label_values, labels_of
from fraudvae.history.spec import HistorySpec
from fraudvae.specs import TimeSpec

Record = list  # [time (s), {entity column: key}, label counted (or None), when it was known (or None)]
Additions = dict[str, dict[str, list[tuple[float, float, float]]]]  # column -> key -> pending (at, label, count)


def record_ttl(spec: HistorySpec) -> float:
    """Seconds a transaction's record is kept for labels: the longest window plus the delay."""
    return max(spec.windows) + (spec.label_delay or 0.0)


def tx_records(spec: HistorySpec, columns: Mapping[str, Sequence], ids: Sequence) -> dict[str, Record]:
    """The record of each transaction with an id (columns of JSON values, one row per id), with the
    label its row carried, if any."""
    t = seconds(spec, columns, typed=True)
    y, known = labels_of(spec, columns, t, typed=True)
    keys = {e: read.keys(list(columns[e]), e, typed=True) for e in spec.entities}
    out: dict[str, Record] = {}
    for j, rid in enumerate(ids):
        if rid is None or str(rid) in out:
            continue
        counted = bool(np.isfinite(y[j]) and np.isfinite(known[j]))
        out[str(rid)] = [float(t[j]), {e: keys[e][j] for e in spec.entities if keys[e][j] is not None},
                         float(y[j]) if counted else None, float(known[j]) if counted else None]
    return out


@dataclass(frozen=True)
class LabelBatch:
    """Labels as posted: transaction ids, 0/1 labels and when each became known (NaN: the default)."""

    ids: list[str]
    labels: np.ndarray
    known_at: np.ndarray


def read_labels(spec: HistorySpec | None, ids: Sequence, labels: Sequence, known_at: Sequence) -> LabelBatch:
    """Posted labels checked: a model that keeps confirmed frauds, ids present, labels 0/1 (also
    true/false, yes/no, fraud/normal), times written as the model's time column (or epoch seconds
    when that is how it is written). Raises `ConfigError` or `SchemaError` naming the record."""
    if spec is None or spec.label_column is None:
        raise ConfigError("this model keeps no confirmed frauds as history: fit it with --label-column, "
                          "--entity-column and --label-delay to post labels")
    for i, rid in enumerate(ids):
        if rid is None or (isinstance(rid, str) and not rid.strip()):
            raise SchemaError(f"record {i}: transaction_id is missing", row=i, column="transaction_id")
    for name, values in (("transaction_id", ids), ("label", labels), ("known_at", known_at)):
        for i, v in enumerate(values):
            if isinstance(v, str) and not _encodable(v):
                raise SchemaError(f"record {i}: {name} is not valid text (it holds a lone UTF-16 surrogate)", row=i,
                                  column=name)
    y = label_values(list(labels), "label", True)
    gap = np.flatnonzero(np.isnan(y))
    if len(gap):
        raise SchemaError(f"record {int(gap[0])}: label is missing (0 or 1)", row=int(gap[0]), column="label")
    at = np.full(len(y), np.nan)
    given = [i for i, v in enumerate(known_at) if v is not None]
    if given:
        times = read.times([known_at[i] for i in given], "known_at",
                           TimeSpec(spec.time_unit, spec.time_format, (), (), False), typed=True)
        at[given] = read.epoch_seconds(times)
    if spec.label_delay is None and np.isnan(at).any():
        i = int(np.flatnonzero(np.isnan(at))[0])
        raise SchemaError(f"record {i}: known_at is needed (the model has no --label-delay to assume)", row=i,
                          column="known_at")
    return LabelBatch([str(r).strip() for r in ids], y, at)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class LabelOutcome:
    """What a batch of labels did: counted for the first time, changed, the same again, unknown ids."""

    applied: int = 0
    changed: int = 0
    unchanged: int = 0
    unknown: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"applied": self.applied, "changed": self.changed, "unchanged": self.unchanged,
                "unknown": len(self.unknown), "unknown_ids": self.unknown[:100]}


def plan(spec: HistorySpec, records: Mapping[str, Record | None], batch: LabelBatch
         ) -> tuple[Additions, dict[str, Record], LabelOutcome]:
    """The pending labels each entity gets, the records to store back and the outcome, for `batch`
    against the stored `records` (None: unknown id). Labels apply in the order posted."""
    adds: Additions = {}
    changed: dict[str, Record] = {}
    out = LabelOutcome()
    for rid, y, given in zip(batch.ids, batch.labels.tolist(), batch.known_at.tolist(), strict=True):
        rec = changed.get(rid) or records.get(rid)
        if rec is None:
            out.unknown.append(rid)
            continue
        t, keys, old, old_at = rec
        if old == y:
            out.unchanged += 1
            continue
        at = t + (spec.label_delay or 0.0) if np.isnan(given) else given
        at = max(at, t) if old_at is None else max(at, t, old_at)
        item = (at, y, 1.0) if old is None else (at, y - old, 0.0)
        for e, k in keys.items():
            adds.setdefault(e, {}).setdefault(k, []).append(item)
        changed[rid] = [t, keys, y, at]
        if old is None:
            out.applied += 1
        else:
            out.changed += 1
    return adds, changed, out
