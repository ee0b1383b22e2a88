"""Two models on the same labelled rows, side by side: what `fraudvae compare` reports before a team
switches models. Each model is measured as `fraudvae evaluate` measures it (`report.measure`), then
their alerts are overlaid: at each model's own threshold, the rows both flag, only one flags, and the
frauds among each."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraudvae.errors import ConfigError
from fraudvae.report import Evaluation, measure, score_labelled, write_directory
from fraudvae.writing import OutputDirectory

if TYPE_CHECKING:
    from fraudvae.detector import FraudVAE

NAMES = ("A", "B")
FIGURES = ("roc.png", "pr.png", "scores.png", "overlap.png")
REPORT = OutputDirectory("a comparison report", "compare.json", frozenset({"compare.json", *FIGURES}), "compare")


@dataclass(frozen=True)
class Comparison:
    evaluations: tuple[Evaluation, Evaluation]  # model A's and model B's, on the same rows
    metrics: dict  # JSON-ready: what compare.json holds


def compare(models: Sequence[tuple[str, FraudVAE]], data: pd.DataFrame | Iterable[pd.DataFrame], label_column: str,
            source: str | None = None, time_column: str | None = None, alerts_per_day: int | None = None,
            alerts: int | None = None) -> Comparison:
    """Measure two models (a description such as their directory, and the model) on the same
    labelled rows, read once. The alert budget: `alerts_per_day` with a `time_column` (precision at
    K per day, averaged over days), else `alerts` (default 100) over all the rows (precision of the K
    highest scores).

    Raises `ConfigError` unless there are two models, `DataError` naming the model and the column
    when the data lacks a column one of them needs, and as `report.evaluate` does."""
    if len(models) != 2:
        raise ConfigError(f"compare takes two models (--model A --model B), got {len(models)}")
    if alerts is not None and time_column is not None:
        raise ConfigError("give --alerts (over the whole file) or --time-column with --alerts-per-day, not both")
    dets = [det for _, det in models]
    named = [f"{n} ({where})" for n, (where, _) in zip(NAMES, models, strict=True)]
    scores, y, days = score_labelled(dets, data, label_column, time_column, alerts_per_day, names=named)
    evs = tuple(measure(det, s, y, days, label_column, source, alerts_per_day)
                for det, s in zip(dets, scores, strict=True))
    k = (alerts_per_day or 100) if time_column is not None else (alerts or 100)
    per_model = {}
    for name, (where, det), ev in zip(NAMES, models, evs, strict=True):
        m = ev.metrics
        at_budget = (m["daily"]["mean_precision_at_k"] if "daily" in m
                     else float(y[np.argsort(-ev.scores, kind="stable")[:k]].mean()))
        per_model[name] = {"path": where, "version": det.version_, "threshold": m["model"]["threshold"],
                           "columns": det.schema_.names(), "auc_roc": m["auc_roc"],
                           "average_precision": m["average_precision"], "precision_at_budget": at_budget,
                           "at_threshold": m["at_threshold"], "recall_at_fpr": m["recall_at_fpr"],
                           **({"daily": m["daily"]} if "daily" in m else {})}
    fa, fb = (ev.scores > ev.threshold for ev in evs)
    fraud = y == 1

    def cell(rows: np.ndarray) -> dict:
        return {"alerts": int(rows.sum()), "frauds": int((rows & fraud).sum())}

    from scipy.stats import spearmanr

    metrics = {
        "data": evs[0].metrics["data"],
        "models": per_model,
        "budget": {"alerts": k, "per": "day" if time_column is not None else "file",
                   "meaning": (f"precision of each day's {k} highest scores, averaged over days" if time_column
                               else f"precision of the {k} highest scores in the file"),
                   **({"warning": f"the budget of {k:,} alerts is not below the file's {len(y):,} rows: precision "
                                  f"at it is the file's fraud rate, whatever the model"}
                      if time_column is None and k >= len(y) else {})},
        "overlap": {"both": cell(fa & fb), "only_a": cell(fa & ~fb), "only_b": cell(~fa & fb),
                    "neither": {"rows": int((~fa & ~fb).sum()), "frauds": int((~fa & ~fb & fraud).sum())},
                    "meaning": "rows flagged at each model's own threshold, and the frauds among them"},
        "score_rank_correlation": float(spearmanr(evs[0].scores, evs[1].scores).statistic),
    }
    return Comparison((evs[0], evs[1]), metrics)


def write_compare_report(c: Comparison, path: str | Path) -> Path:
    """``compare.json`` and the figures (`FIGURES`) in directory `path`, atomically. Returns it."""
    from fraudvae import plots

    a, b = c.evaluations
    m = c.metrics
    scores = {_label(m, n): ev.scores for n, ev in zip(NAMES, c.evaluations, strict=True)}
    thresholds = {_label(m, n): ev.threshold for n, ev in zip(NAMES, c.evaluations, strict=True)}
    draw = {
        "roc.png": lambda ax: plots.roc(ax, a.labels, scores, thresholds),
        "pr.png": lambda ax: plots.precision_recall(ax, a.labels, scores, thresholds),
        "scores.png": lambda ax: plots.score_scatter(ax, a.labels, scores, thresholds),
        "overlap.png": lambda ax: plots.alert_overlap(ax, m["overlap"], (_label(m, "A"), _label(m, "B"))),
    }
    title = (f"{_label(m, 'A')} vs {_label(m, 'B')} on {plots.file_name(m['data']['source'])} "
             f"({m['data']['fraud_rate']:.2%} fraud)")
    return write_directory(path, REPORT, m, draw, title)


def _label(m: dict, name: str) -> str:
    return f"{name} {m['models'][name]['version'][:12]}"


def summary(c: Comparison) -> str:
    """The comparison in a few lines for a terminal."""
    m = c.metrics
    d, A, B = m["data"], m["models"]["A"], m["models"]["B"]
    budget = m["budget"]
    rows = [("AUC-ROC", "auc_roc", "{:.3f}"), ("average precision", "average_precision", "{:.3f}"),
            (f"precision at {budget['alerts']} alerts" + (" a day" if budget["per"] == "day" else " in the file"),
             "precision_at_budget", "{:.3f}")]
    table = [(what, fmt.format(A[key]), fmt.format(B[key])) for what, key, fmt in rows]
    for what, key, fmt in (("alerts at its threshold", "flagged", "{:,}"),
                           ("precision at its threshold", "precision", "{:.3f}"),
                           ("recall at its threshold", "recall", "{:.3f}")):
        table.append((what, fmt.format(A["at_threshold"][key]), fmt.format(B["at_threshold"][key])))
    for f in A["recall_at_fpr"]:
        table.append((f"best recall at FPR {float(f):.1%}", f"{A['recall_at_fpr'][f]['recall']:.3f}",
                      f"{B['recall_at_fpr'][f]['recall']:.3f}"))
    w = max(len(what) for what, _, _ in table) + 2  # every row lines up, whatever the budget's text
    lines = [f"{'':<{w}}{'A':>14}{'B':>14}"] + [f"{what:<{w}}{a:>14}{b:>14}" for what, a, b in table]
    o = m["overlap"]
    return "\n".join([
        f"A: {A['path']} (model {A['version']})",
        f"B: {B['path']} (model {B['version']})",
        f"on {d['source'] or 'the data'}: {d['rows']:,} rows, {d['frauds']:,} fraud ({d['fraud_rate']:.2%}; "
        "measured at this fraud rate)",
        *lines,
        f"alerts at each model's threshold: both {o['both']['alerts']:,} ({o['both']['frauds']:,} fraud), "
        f"only A {o['only_a']['alerts']:,} ({o['only_a']['frauds']:,} fraud), "
        f"only B {o['only_b']['alerts']:,} ({o['only_b']['frauds']:,} fraud); "
        f"neither {o['neither']['rows']:,} rows ({o['neither']['frauds']:,} fraud)",
        f"score rank correlation (Spearman) {m['score_rank_correlation']:.3f}",
        *([f"warning: {budget['warning']}"] if "warning" in budget else []),
    ])
