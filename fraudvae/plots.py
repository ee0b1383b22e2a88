"""Evaluation figures drawn into matplotlib axes, so a report and a notebook draw the same pictures
(and a notebook can overlay peers). matplotlib is imported by the caller; nothing here picks a
backend or shows a window."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes

NORMAL_COLOR, FRAUD_COLOR, THRESHOLD_COLOR = "tab:blue", "tab:red", "black"


def alerts_per_day(ax: Axes, daily: dict) -> None:
    """Per day: the alerts the threshold raises and the frauds among them, against the day's
    budget; precision at the budget on a second axis."""
    days = [r["day"] for r in daily["per_day"]]
    x = np.arange(len(days))
    k = daily["alerts_per_day"]
    ax.bar(x - 0.2, [r["alerts_at_threshold"] for r in daily["per_day"]], width=0.4, color=NORMAL_COLOR,
           label="alerts at the threshold")
    ax.bar(x + 0.2, [r["frauds_caught_at_threshold"] for r in daily["per_day"]], width=0.4, color=FRAUD_COLOR,
           label="frauds among them")
    ax.axhline(k, color=THRESHOLD_COLOR, ls="--", label=f"budget: {k} alerts a day")
    ax.set_xticks(x, days, rotation=45, ha="right")
    ax.set(xlabel="day", ylabel="rows")
    right = ax.twinx()
    right.plot(x, [r["precision_at_k"] for r in daily["per_day"]], "o-", color="tab:green",
               label=f"precision at {k}")
    right.set(ylabel=f"precision of the top {k} a day", ylim=(0, 1.05))
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = right.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, fontsize="small", loc="upper left")


def roc(ax: Axes, labels: np.ndarray, scores: Mapping[str, np.ndarray],
        operating_point: tuple[str, float] | None = None) -> None:
    """ROC curves of named scores on the same rows; ``operating_point`` = (name, threshold) marks
    where flagging ``score > threshold`` lands."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(labels).astype(int)
    for name, s in scores.items():
        f, t, _ = roc_curve(y, s)
        ax.plot(f, t, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    if operating_point is not None:
        name, threshold = operating_point
        flag = np.asarray(scores[name]) > threshold
        ax.plot(flag[y == 0].mean(), flag[y == 1].mean(), "o", color=THRESHOLD_COLOR,
                label=f"{name} at its threshold")
    ax.set(xlabel="false-positive rate", ylabel="recall (true-positive rate)", title="ROC curve",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize="small")


def precision_recall(ax: Axes, labels: np.ndarray, scores: Mapping[str, np.ndarray],
                     operating_point: tuple[str, float] | None = None) -> None:
    """Precision-recall curves with the no-skill line (the fraud share) and the operating point."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y = np.asarray(labels).astype(int)
    for name, s in scores.items():
        p, r, _ = precision_recall_curve(y, s)
        ax.plot(r, p, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    ax.axhline(y.mean(), ls=":", color="grey", label=f"no skill ({y.mean():.3f})")
    if operating_point is not None:
        name, threshold = operating_point
        flag = np.asarray(scores[name]) > threshold
        tp = int((flag & (y == 1)).sum())
        ax.plot(tp / max(y.sum(), 1), tp / max(flag.sum(), 1), "o", color=THRESHOLD_COLOR,
                label=f"{name} at its threshold")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize="small")


def _score_range(scores: np.ndarray, threshold: float | None) -> tuple[float, float]:
    """Where the bulk of the scores lies (the far tail is piled into the last bin)."""
    lo, hi = np.quantile(scores, [0.0, 0.995])
    if threshold is not None:
        hi = max(hi, threshold * 1.05 if threshold > 0 else threshold + 1)
    return float(lo), float(hi) if hi > lo else float(lo + 1)


def score_histogram(ax: Axes, labels: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> None:
    """Score densities of normal and fraud rows (each normalised), with the threshold line."""
    y = np.asarray(labels).astype(int)
    lo, hi = _score_range(scores, threshold)
    bins = np.linspace(lo, hi, 60)
    clipped = np.clip(scores, lo, hi)
    for cls, name, color in ((0, "normal", NORMAL_COLOR), (1, "fraud", FRAUD_COLOR)):
        part = clipped[y == cls]
        if len(part):
            ax.hist(part, bins=list(bins), density=True, alpha=0.55, color=color, label=f"{name} ({len(part):,})")
    if threshold is not None:
        ax.axvline(threshold, color=THRESHOLD_COLOR, ls="--", label=f"threshold {threshold:.2f}")
    ax.set(xlabel=f"score (negative ELBO, nats; above {hi:.1f} piled into the last bin)", ylabel="density",
           title="Scores of normal and fraud rows")
    ax.set_yscale("log")
    ax.legend(fontsize="small")


def threshold_tradeoff(ax: Axes, labels: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> None:
    """Precision, recall and alert rate (share of rows flagged) as the threshold moves."""
    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=float)
    lo, hi = _score_range(s, threshold)
    cuts = np.linspace(lo, hi, 300)
    frauds = np.sort(s[y == 1])
    everyone = np.sort(s)
    flagged = len(everyone) - np.searchsorted(everyone, cuts, side="right")  # score > cut
    caught = len(frauds) - np.searchsorted(frauds, cuts, side="right")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(flagged > 0, caught / flagged, np.nan)
    ax.plot(cuts, precision, label="precision", color="tab:green")
    ax.plot(cuts, caught / max(len(frauds), 1), label="recall", color=FRAUD_COLOR)
    ax.plot(cuts, flagged / len(everyone), label="alert rate", color="tab:purple")
    if threshold is not None:
        ax.axvline(threshold, color=THRESHOLD_COLOR, ls="--", label=f"threshold {threshold:.2f}")
    ax.set(xlabel="threshold (flag score > threshold)", ylabel="rate", ylim=(0, 1.01),
           title="Precision, recall and alert rate against the threshold")
    ax.legend(fontsize="small")


def latent_scatter(ax: Axes, points: np.ndarray, labels: np.ndarray) -> None:
    """2-D projections of latent means, normal and fraud rows coloured (frauds drawn on top)."""
    y = np.asarray(labels).astype(int)
    ax.scatter(points[y == 0, 0], points[y == 0, 1], s=4, alpha=0.35, color=NORMAL_COLOR,
               label=f"normal ({int((y == 0).sum()):,})")
    ax.scatter(points[y == 1, 0], points[y == 1, 1], s=12, alpha=0.9, color=FRAUD_COLOR,
               label=f"fraud ({int((y == 1).sum()):,})")
    ax.set(xlabel="component 1", ylabel="component 2", title="Latent space (posterior means)")
    ax.legend(fontsize="small", markerscale=2)
