"""Evaluation on labelled rows: metrics at the model's threshold and threshold-free, a report
directory (metrics.json and PNG figures) and a one-screen summary. Used by `fraudvae evaluate`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraudvae.budget import card_precision, daily_metrics, day_of
from fraudvae.errors import ConfigError, DataError, SchemaError
from fraudvae.metrics import metrics_at, natural_weights, recall_at_fpr
from fraudvae.schema import to_binary_label
from fraudvae.writing import OutputDirectory, atomic_directory

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from fraudvae.detector import FraudVAE

RECALL_AT_FPRS = (0.001, 0.005, 0.01)
FIGURES = ("roc.png", "pr.png", "scores.png", "tradeoff.png")
REPORT = OutputDirectory("an evaluation report", "metrics.json",
                         frozenset({"metrics.json", *FIGURES, "alerts_per_day.png"}), "report")


@dataclass(frozen=True)
class Evaluation:
    scores: np.ndarray  # (n,) the model's scores of the evaluated rows
    labels: np.ndarray  # (n,) 0 normal, 1 fraud
    threshold: float  # the model's stored threshold
    metrics: dict  # JSON-ready (see `evaluate`)
    days: np.ndarray | None = None  # (n,) each row's day, when evaluated with a time column


def evaluate(det: FraudVAE, data: pd.DataFrame | Iterable[pd.DataFrame], label_column: str,
             source: str | None = None, time_column: str | None = None,
             alerts_per_day: int | None = None, natural_fraud_rate: float | None = None) -> Evaluation:
    """Score labelled rows (a frame, or chunks of one file) and measure the model on them, at the
    data's own fraud rate. With `time_column`, also per day: precision at `alerts_per_day` (default
    100) and the alerts the threshold raises against that budget (`fraudvae.budget`). With
    `natural_fraud_rate` (the rate of real traffic, when the rows are enriched with frauds or
    sampled), precision and AP also at that rate, the normal rows reweighted to it.

    Raises `DataError` when the label or time column is missing or bad, or when the rows hold no
    fraud or no normal row (the metrics need both)."""
    det.check_fitted()
    history = det.history_
    entity = history.spec.entities[0] if history is not None and time_column is not None else None
    cards: list[np.ndarray] = []
    if entity is not None:  # the first entity's ids, for card precision (`budget.card_precision`)
        data = _recording(data, entity, cards)
    (s,), y, d = score_labelled([det], data, label_column, time_column, alerts_per_day)
    ev = measure(det, s, y, d, label_column, source, alerts_per_day, natural_fraud_rate)
    if entity is not None and d is not None and cards:
        ev.metrics["daily"].update(card_precision(s, y, d, np.concatenate(cards), alerts_per_day or 100),
                                   card_precision_entity=entity)
    return ev


def _recording(data: pd.DataFrame | Iterable[pd.DataFrame], column: str,
               into: list[np.ndarray]) -> Iterable[pd.DataFrame]:
    """The chunks of `data`, each one's `column` kept in `into` as text keys as they pass."""
    for chunk in [data] if isinstance(data, pd.DataFrame) else data:
        if column in chunk.columns:
            into.append(chunk[column].astype(str).to_numpy())
        yield chunk


def score_labelled(dets: Sequence[FraudVAE], data: pd.DataFrame | Iterable[pd.DataFrame], label_column: str,
                   time_column: str | None = None, alerts_per_day: int | None = None,
                   names: Sequence[str] | None = None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
    """Each model's scores of labelled rows read once (a frame, or chunks of one file), the labels
    (0 normal, 1 fraud) and, with `time_column`, each row's day. Each model reads the columns it
    needs; with `names`, an error about a column names the model that needs it.

    Raises `DataError` as `evaluate` does."""
    for det in dets:
        det.check_fitted()
    if alerts_per_day is not None and time_column is None:
        raise DataError("--alerts-per-day needs --time-column (the column that says which day a row is)")
    scores: list[list[np.ndarray]] = [[] for _ in dets]
    labels, days = [], []
    for chunk in [data] if isinstance(data, pd.DataFrame) else data:
        for what, name in (("label", label_column), ("time", time_column)):
            if name is not None and name not in chunk.columns:
                raise DataError(f"{what} column {name!r} is not a column of the data "
                                f"(columns: {', '.join(map(str, chunk.columns[:20]))})", column=name)
        labels.append(to_binary_label(chunk[label_column], label_column))
        for j, det in enumerate(dets):
            try:
                scores[j].append(det.score_samples(chunk))
            except SchemaError as e:
                if names is None:
                    raise
                raise SchemaError(f"model {names[j]}: {e}", row=e.row, column=e.column) from None
        if time_column is not None:
            days.append(day_of(chunk[time_column], time_column))
    y = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    frauds = int(y.sum())
    if frauds == 0 or frauds == len(y):
        what = "no fraud rows" if frauds == 0 else "no normal rows"
        raise DataError(f"label column {label_column!r} has {what} ({len(y)} rows): evaluation needs both")
    return ([np.concatenate(s) if s else np.zeros(0) for s in scores], y,
            np.concatenate(days) if days else None)


def measure(det: FraudVAE, s: np.ndarray, y: np.ndarray, days: np.ndarray | None, label_column: str,
            source: str | None = None, alerts_per_day: int | None = None,
            natural_fraud_rate: float | None = None) -> Evaluation:
    """The metrics of `evaluate` from a model's scores `s` of rows labelled `y` (both classes present)."""
    from sklearn.metrics import average_precision_score

    if natural_fraud_rate is not None and not 0 < natural_fraud_rate < 1:
        raise ConfigError(f"natural fraud rate {natural_fraud_rate!r} must be between 0 and 1")
    frauds = int(y.sum())
    t = det.threshold_
    at = metrics_at(s, y, t.value)
    flagged = at["tp"] + at["fp"]
    auc, ap = at.pop("auc_roc"), at.pop("average_precision")
    metrics: dict = {
        "model": {"version": det.version_, "threshold": t.value,
                  "threshold_method": t.method, "threshold_target": t.target},
        "data": {"source": source, "label_column": label_column, "rows": len(y), "frauds": frauds,
                 "normals": len(y) - frauds, "fraud_rate": frauds / len(y)},
        "auc_roc": auc,
        "average_precision": ap,  # the area under the PR curve (step-wise)
        "no_skill_average_precision": frauds / len(y),
        "at_threshold": {
            "threshold": t.value, "precision": at["precision"], "recall": at["recall"], "f1": at["f1"],
            "fpr": at["fpr"], "alert_rate": flagged / len(y), "flagged": flagged,
            "confusion_matrix": {k: at[k] for k in ("tn", "fp", "fn", "tp")},
        },
        "recall_at_fpr": {f"{f:g}": recall_at_fpr(s, y, f) for f in RECALL_AT_FPRS},
        "score_quantiles": {name: {f"q{q:g}": float(np.quantile(s[y == c], q / 100)) for q in (1, 50, 90, 99)}
                            for c, name in ((0, "normal"), (1, "fraud"))},
        # everything above is measured on the rows as given, at their own fraud rate: an enriched
        # test set (more frauds than traffic has) shows a higher precision than production will
        "as_given": {"fraud_rate": frauds / len(y), "precision_at_threshold": at["precision"],
                     "average_precision": ap},
    }
    if natural_fraud_rate is None:
        metrics["at_natural_fraud_rate"] = {
            **metrics["as_given"], "reweighted": False,
            "note": "the data's own fraud rate, taken as the natural one; precision falls with the fraud rate"}
    else:  # normals weighted as traffic at that rate would hold them; recall and FPR do not change
        w = natural_weights(y, natural_fraud_rate)
        tp, fp = at["tp"], at["fp"]
        weighted_fp = fp * float(w[y == 0][0]) if fp else 0.0
        metrics["at_natural_fraud_rate"] = {
            "fraud_rate": natural_fraud_rate, "reweighted": True,
            "precision_at_threshold": tp / (tp + weighted_fp) if tp + weighted_fp else 0.0,
            "average_precision": float(average_precision_score(y, s, sample_weight=w)),
            "note": f"the rows reweighted from their own {frauds / len(y):.2%} fraud to {natural_fraud_rate:.2%}"}
    if days is not None:
        metrics["daily"] = daily_metrics(s, y, days, t.value, alerts_per_day or 100)
    return Evaluation(s, y, t.value, metrics, days)


def write_report(ev: Evaluation, path: str | Path) -> Path:
    """Write ``metrics.json`` and the figures (`FIGURES`) into directory `path`, atomically (an
    existing report there is replaced whole). Returns the directory."""
    from fraudvae import plots

    m = ev.metrics
    name = f"model {m['model']['version'][:12]}"
    natural = m["at_natural_fraud_rate"]
    draw = {
        "roc.png": lambda ax: plots.roc(ax, ev.labels, {name: ev.scores}, {name: ev.threshold}),
        "pr.png": lambda ax: plots.precision_recall(ax, ev.labels, {name: ev.scores}, {name: ev.threshold},
                                                    natural["fraud_rate"] if natural["reweighted"] else None),
        "scores.png": lambda ax: plots.score_histogram(ax, ev.labels, ev.scores, ev.threshold),
        "tradeoff.png": lambda ax: plots.threshold_tradeoff(ax, ev.labels, ev.scores, ev.threshold),
    }
    if "daily" in ev.metrics:
        draw["alerts_per_day.png"] = lambda ax: plots.alerts_per_day(ax, ev.metrics["daily"])
    title = f"{name} on {plots.file_name(m['data']['source'])} ({m['data']['fraud_rate']:.2%} fraud as given)"
    return write_directory(path, REPORT, ev.metrics, draw, title)


def write_directory(path: str | Path, kind: OutputDirectory, content: dict,
                    draw: Mapping[str, Callable[[Axes], None]], title: str,
                    size: tuple[float, float] = (6.4, 4.8)) -> Path:
    """A report directory of `kind`, written atomically (an earlier report of the same kind there is
    replaced whole; a folder holding anything else is refused): `content` as the kind's JSON
    document, and each figure of `draw` (file name -> a function drawing into an axes) under
    `title`, `size` inches. Returns the directory."""
    from matplotlib.figure import Figure

    with atomic_directory(path, kind) as tmp:
        (tmp / kind.document).write_text(json.dumps(content, indent=1, allow_nan=False))
        for file, plot in draw.items():
            fig = Figure(figsize=size, layout="constrained")
            plot(fig.add_subplot())
            fig.suptitle(title, fontsize="small")
            fig.savefig(tmp / file, dpi=110)
    return Path(path).resolve()


def summary(ev: Evaluation) -> str:
    """The report in a few lines for a terminal."""
    m = ev.metrics
    d, a, c = m["data"], m["at_threshold"], m["at_threshold"]["confusion_matrix"]
    model = m["model"]
    at_fpr = "   ".join(
        f"at FPR {float(f):.1%}: {r['recall']:.3f}"
        + (f" (score >= {r['threshold']:.2f})" if r["threshold"] is not None else "")
        for f, r in m["recall_at_fpr"].items())
    w = max(len(f"{c['tn']:,}"), len(f"{c['fn']:,}"), len("normal"))
    return "\n".join([
        f"model {model['version']} on {d['source'] or 'the data'}",
        f"rows {d['rows']:,}: {d['normals']:,} normal, {d['frauds']:,} fraud ({d['fraud_rate']:.2%})",
        f"AUC-ROC {m['auc_roc']:.3f}   average precision (AUC-PR) {m['average_precision']:.3f} "
        f"(no skill {m['no_skill_average_precision']:.3f})",
        f"at the model's threshold {a['threshold']:.4f} ({model['threshold_method']} {model['threshold_target']:g} "
        "on validation normals):",
        f"  flagged {a['flagged']:,} ({a['alert_rate']:.2%})   precision {a['precision']:.3f}   "
        f"recall {a['recall']:.3f}   F1 {a['f1']:.3f}   FPR {a['fpr']:.4f}",
        f"  {'':<14}{'predicted normal':>{w + 12}}{'predicted fraud':>{w + 12}}",
        f"  {'actual normal':<14}{c['tn']:>{w + 12},}{c['fp']:>{w + 12},}",
        f"  {'actual fraud':<14}{c['fn']:>{w + 12},}{c['tp']:>{w + 12},}",
        f"best recall {at_fpr}",
        *_natural_lines(m),
        *(_daily_lines(m["daily"]) if "daily" in m else []),
    ])


def _daily_lines(daily: dict) -> list[str]:
    k = daily["alerts_per_day"]
    lines = [f"per day over {daily['days']} days, a budget of {k} alerts: precision at {k} "
             f"{daily['mean_precision_at_k']:.3f} mean (sd {daily['std_precision_at_k']:.3f}, "
             f"{daily['min_precision_at_k']:.3f} to {daily['max_precision_at_k']:.3f}); the threshold raises "
             f"{daily['mean_alerts_at_threshold']:.1f} alerts a day, over budget on {daily['days_over_budget']} days"]
    if "mean_card_precision_at_k" in daily:
        lines.append(f"card precision at {k} ({daily['card_precision_entity']}: each day's {k} entities with the "
                     f"highest score, the share with a fraud that day): {daily['mean_card_precision_at_k']:.3f} mean")
    return lines


def _natural_lines(m: dict) -> list[str]:
    n, d = m["at_natural_fraud_rate"], m["data"]
    if not n["reweighted"]:
        return [f"(measured at the data's own fraud rate, {d['fraud_rate']:.2%}; precision falls with the rate)"]
    return [f"at the natural fraud rate {n['fraud_rate']:.2%} (the data holds {d['fraud_rate']:.2%}; normals "
            f"reweighted): precision at the threshold {n['precision_at_threshold']:.3f}, "
            f"average precision {n['average_precision']:.3f}"]
