"""Confirmed frauds as history: each entity's frauds known before a transaction, from labels that
become known a delay after the fact.

A label (the model's label column, 0 or 1; a gap is no label) of a transaction becomes known at
the transaction's time plus the specification's `label_delay`, or at the time in its
`label_time_column` (never before the transaction itself). It then counts for every entity of its
transaction. Per entity column E and its risk window W (`HistorySpec.risk_windows`: one, chosen by
`spec.risk_window`: a day for new models), the state keeps the entity's labels known
strictly before the row's time that say fraud and all its labels known, each weighted
e^(-time since it became known / W). A row gets ``E: fraud share known in W``, the first over the
second (0 while none is known): unlike the number of frauds, a share means the same at a busy terminal
as at a quiet one (the Handbook's data, seeds 0-4, in bench/RESULTS.md). Models saved before the
share read the number, ``E: frauds known in W`` (`HistorySpec.risk_measures`).
A row never sees its own label (it becomes known after the row) nor one known at or after its
time. Labels not known by the end of a batch wait in the state (`Pending`) and come due while
later batches are read: fit then score equals one file, and the state stays bounded by the delay.
Labels change the state only as they become known; reading a row changes nothing here, so the
features are the same whether rows come alone, in chunks or in one file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from fraudvae import readers as read
from fraudvae.errors import SchemaError
from fraudvae.history.spec import HistorySpec
from fraudvae.history.state import EntityTable, Pending
from fraudvae.schema import FALSE_STRINGS, TRUE_STRINGS, where
from fraudvae.specs import TimeSpec

FRAUDS, LABELLED = 0, 1
KNOWN_AT = "__label_known_at__"  # a frame's per-row times (seconds) its labels became known, set by `with_labels`
ID_NAMES = ("transaction_id", "id")  # how a labels file may name its transaction id besides the model's id column


def labels_of(spec: HistorySpec, data: pd.DataFrame | Mapping[str, Sequence], t: np.ndarray,
              typed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Each row's label (1.0 fraud, 0.0 not, NaN: none) and the time it becomes known (seconds, never
    before the row's own time). Without a label column in `data`, no row has a label."""
    n = len(t)
    name = spec.label_column
    if name is None or name not in data:
        return np.full(n, np.nan), np.full(n, np.inf)
    values = data[name] if not typed else list(data[name])
    y = label_values(values, name, typed)
    if spec.label_time_column is not None and spec.label_time_column in data:
        tc = spec.label_time_column
        raw = data[tc] if not typed else list(data[tc])
        at = read.epoch_seconds(read.times(raw, tc, TimeSpec(spec.label_time_unit, spec.label_time_format, (), (),
                                                             False), typed=typed))
    else:
        at = np.full(n, np.nan)
    if KNOWN_AT in data:
        extra = np.asarray(list(data[KNOWN_AT]), dtype=np.float64)
        at = np.where(np.isfinite(extra), extra, at)
    if spec.label_delay is not None:
        at = np.where(np.isnan(at), t + spec.label_delay, at)
    at = np.where(np.isnan(at), np.inf, np.maximum(at, t))  # no time and no delay: never known
    return y, at


def label_values(values: pd.Series | list, name: str, typed: bool) -> np.ndarray:
    """A label column read for the history: 0/1, true/false, yes/no, fraud/normal; a gap is no label."""
    items = list(values)
    out = np.full(len(items), np.nan)
    for i, v in enumerate(items):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            continue
        if isinstance(v, bool | np.bool_):
            out[i] = float(v)
        elif isinstance(v, int | float | np.integer | np.floating) and v in (0, 1):
            out[i] = float(v)
        elif isinstance(v, str) and v.strip().lower() in TRUE_STRINGS | FALSE_STRINGS:
            out[i] = float(v.strip().lower() in TRUE_STRINGS)
        elif isinstance(v, str) and not v.strip():
            continue
        else:
            place = where(values, i) if isinstance(values, pd.Series) else f"record {i}"
            row = values.index[i] if isinstance(values, pd.Series) else i
            raise SchemaError(f"label column {name!r} is not binary: value {v!r} ({place}) (allowed: 0/1, true/false, "
                              f"yes/no, fraud/normal, or a gap for a transaction not labelled)", row=row, column=name)
    return out


def risk(spec: HistorySpec, e: str, table: EntityTable, t: np.ndarray, own: list[str | None], y: np.ndarray,
         known: np.ndarray, end: float) -> dict[str, np.ndarray]:
    """The confirmed-fraud features of entity column `e` for rows at times `t` with entity keys `own`,
    labels `y` known at `known`; `table` takes the labels known before `end` (the clock after these
    rows), the rest wait in its `Pending`."""
    windows = np.asarray(spec.risk_windows)
    n = len(t)
    frauds = np.full((n, len(windows)), np.nan)
    share = np.full((n, len(windows)), np.nan)
    present = np.fromiter((k is not None for k in own), dtype=bool, count=n)
    q = np.flatnonzero(present)
    lab = np.flatnonzero(present & np.isfinite(y) & np.isfinite(known))
    pend = table.pending
    keys = [str(own[i]) for i in q.tolist()] + [str(own[i]) for i in lab.tolist()] + pend.keys
    ent = table.rows(keys)
    at = np.r_[t[q], known[lab], pend.at]
    value = np.r_[np.full(len(q), np.nan), y[lab], pend.labels]
    count = np.r_[np.zeros(len(q)), np.ones(len(lab)), pend.counts]
    is_label = np.r_[np.zeros(len(q), bool), np.ones(len(lab) + len(pend), bool)]
    row = np.r_[q, np.full(len(lab) + len(pend), -1)]
    wait = is_label & (at >= end)
    table.pending = Pending(at[wait], [table.keys[a] for a in ent[wait].tolist()], value[wait], count[wait])
    go = np.flatnonzero(~wait)
    # per entity in time order; at one time the rows before the labels (a label known at a row's time is not
    # known before it), then input order
    order = go[np.lexsort((go, is_label[go], at[go], ent[go]))]
    se = ent[order]
    starts = np.r_[0, np.flatnonzero(np.diff(se)) + 1]
    rank = np.arange(len(se)) - np.repeat(starts, np.diff(np.r_[starts, len(se)]))
    by_round = order[np.argsort(rank, kind="stable")]
    bounds = np.r_[0, np.cumsum(np.bincount(rank))] if len(rank) else np.zeros(1, dtype=np.int64)
    for r in range(len(bounds) - 1):
        sel = by_round[bounds[r]: bounds[r + 1]]  # one event of each entity
        a, when = ent[sel], at[sel]
        since = table.risk_at[a]
        dt = np.where(np.isnan(since), 0.0, np.maximum(when - np.where(np.isnan(since), when, since), 0.0))
        now = table.risk[a] * np.exp(-dt[:, None] / windows)[:, :, None]
        reads, labels = ~is_label[sel], is_label[sel]
        i = row[sel][reads]
        frauds[i] = now[reads, :, FRAUDS]
        # the share from the counts as last updated, not as decayed to the row's time: frauds and labels decay
        # alike, so it is the same ratio, and it stays one after the decayed counts underflow to 0 (about two
        # years without a label at a day's window)
        share[i] = _share(table.risk[a[reads]])
        if labels.any():
            la = a[labels]
            add = np.stack([np.broadcast_to(value[sel][labels][:, None], (len(la), len(windows))),
                            np.broadcast_to(count[sel][labels][:, None], (len(la), len(windows)))], axis=-1)
            table.risk[la] = now[labels] + add
            table.risk_at[la] = np.fmax(since[labels], when[labels])
    measures = {"frauds": frauds, "share": share}
    columns = [measures[m][:, k] for k in range(len(windows)) for m in spec.risk_measures]
    return dict(zip(spec.risk_names(e), columns, strict=True))


def _share(counts: np.ndarray) -> np.ndarray:
    """Frauds known over labels known (`counts`: (..., windows, 2)), 0 where none is known; within [0, 1]: a
    corrected label's change (+1 or -1 frauds, `fraudvae.history.labels`) is weighed from when it is known,
    the label it corrects from when that was, so they can part."""
    frauds, labelled = counts[..., FRAUDS], counts[..., LABELLED]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(labelled > 0, np.clip(frauds / labelled, 0.0, 1.0), 0.0)


def with_labels(df: pd.DataFrame, labels: pd.DataFrame, spec: HistorySpec, id_column: str | None
                ) -> tuple[pd.DataFrame, int]:
    """`df` with the confirmations of a labels file (`fraudvae score --labels`): columns the
    transaction id (the model's id column, or ``transaction_id``/``id``), ``label`` and optionally
    ``known_at`` (when it became known; else the model's delay after the transaction). A label
    given for a row replaces the row's own (the later word on it); given twice, the last one
    counts. Returns the frame (not changed in place) and how many labels name no row of `df`."""
    from fraudvae.errors import ConfigError, DataError

    if spec.label_column is None:
        raise ConfigError("--labels adds confirmed frauds to the entities' history: the model was fit without "
                          "--label-delay or --label-time-column")
    if id_column is None:
        raise ConfigError("--labels joins labels to transactions by id: the model was fit without --id-column")
    name = next((c for c in (id_column, *ID_NAMES) if c in labels.columns), None)
    if name is None or "label" not in labels.columns:
        raise DataError(f"the labels file needs columns {id_column!r} (or transaction_id) and label; it has "
                        f"{', '.join(map(str, labels.columns))}")
    y = label_values(labels["label"], "label", False)
    ids = labels[name].astype(str).str.strip().to_numpy()
    at = np.full(len(labels), np.nan)
    if "known_at" in labels.columns:
        when = pd.to_datetime(labels["known_at"], errors="coerce", format="mixed")
        bad = when.isna() & labels["known_at"].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"labels file: known_at {labels['known_at'].iloc[i]!r} ({where(labels['known_at'], i)}) "
                            f"is not a date-time", row=labels.index[i], column="known_at")
        if when.dt.tz is not None:
            when = when.dt.tz_convert(None)
        at = read.epoch_seconds(when)
    keep = np.isfinite(y)
    latest = pd.DataFrame({"y": y[keep], "at": at[keep]}, index=ids[keep])
    latest = latest[~latest.index.duplicated(keep="last")]
    own = df[id_column].astype(str).str.strip()
    found = own.isin(latest.index).to_numpy()
    out = df.copy()
    current = label_values(out[spec.label_column], spec.label_column, False) if spec.label_column in out \
        else np.full(len(out), np.nan)
    hit = latest.reindex(own[found])
    current[found] = hit["y"].to_numpy()
    known = np.asarray(out[KNOWN_AT], dtype=np.float64) if KNOWN_AT in out else np.full(len(out), np.nan)
    known[found] = hit["at"].to_numpy()
    out[spec.label_column], out[KNOWN_AT] = current, known
    return out, int((~latest.index.isin(own)).sum())
