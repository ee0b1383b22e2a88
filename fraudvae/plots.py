"""Evaluation figures drawn into matplotlib axes, so a report and a notebook draw the same pictures
(and a notebook can overlay peers). matplotlib is imported by the caller; nothing here picks a
backend or shows a window."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes

from fraudvae.metrics import natural_weights

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


def file_name(source: str | None) -> str:
    """A data file as a figure's title names it."""
    return Path(source).name if source else "the data"


def roc(ax: Axes, labels: np.ndarray, scores: Mapping[str, np.ndarray],
        operating_points: Mapping[str, float] | None = None) -> None:
    """ROC curves of named scores on the same rows, on a logarithmic false-positive axis (the region
    an alert budget allows, below 1%, is most of the picture); ``operating_points`` (name ->
    threshold) mark where flagging ``score > threshold`` lands."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(labels).astype(int)
    lowest = 1 / max(int((y == 0).sum()), 1)  # one normal row: the smallest false-positive rate measurable
    left = lowest / 2  # a false-positive rate of 0 is drawn at the left edge
    for name, s in scores.items():
        f, t, _ = roc_curve(y, s)
        line, = ax.plot(np.maximum(f, left), t, drawstyle="steps-post",
                        label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
        if operating_points and name in operating_points:
            flag = np.asarray(s) > operating_points[name]
            ax.plot(max(flag[y == 0].mean(), left), flag[y == 1].mean(), "o", color=line.get_color(),
                    markeredgecolor=THRESHOLD_COLOR, label=f"{name} at its threshold")
    chance = np.geomspace(left, 1, 100)
    ax.plot(chance, chance, ls=":", color="grey", label="chance")
    for f in (0.001, 0.01):
        if f > left:
            ax.axvline(f, color="grey", lw=0.6, alpha=0.5)
    ax.set_xscale("log")
    ax.set(xlabel=f"false-positive rate (log scale; 0 drawn at {left:.0e})", ylabel="recall (true-positive rate)",
           title="ROC curve", xlim=(left, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize="small")


def precision_recall(ax: Axes, labels: np.ndarray, scores: Mapping[str, np.ndarray],
                     operating_points: Mapping[str, float] | None = None,
                     natural_fraud_rate: float | None = None) -> None:
    """Precision-recall curves with the no-skill line (the fraud share) and the operating points.
    With `natural_fraud_rate`, each curve is also drawn (dashed, labelled) as it would be on traffic
    at that fraud rate: an enriched test set overstates precision."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y = np.asarray(labels).astype(int)
    for name, s in scores.items():
        p, r, _ = precision_recall_curve(y, s)
        line, = ax.plot(r, p, label=f"{name} (AP {average_precision_score(y, s):.3f}, at {y.mean():.2%} fraud "
                                    "as given)")
        if natural_fraud_rate is not None:
            w = natural_weights(y, natural_fraud_rate)
            pn, rn, _ = precision_recall_curve(y, s, sample_weight=w)
            ap = average_precision_score(y, s, sample_weight=w)
            ax.plot(rn, pn, ls="--", color=line.get_color(),
                    label=f"{name} at {natural_fraud_rate:.2%} fraud (reweighted; AP {ap:.3f})")
        if operating_points and name in operating_points:
            flag = np.asarray(s) > operating_points[name]
            tp = int((flag & (y == 1)).sum())
            ax.plot(tp / max(y.sum(), 1), tp / max(flag.sum(), 1), "o", color=line.get_color(),
                    markeredgecolor=THRESHOLD_COLOR, label=f"{name} at its threshold")
    ax.axhline(y.mean(), ls=":", color="grey", label=f"no skill ({y.mean():.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize="small")


def _wide(scores: np.ndarray) -> bool:
    """Scores whose far tail is much longer than their bulk (an axis in scores would squash the bulk)."""
    lo, q, hi = np.quantile(scores, [0.0, 0.99, 1.0])
    return bool(hi - q > 5 * max(q - lo, 1e-9))


def score_histogram(ax: Axes, labels: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> None:
    """Row counts of normal and fraud scores over their full range, with the threshold line. Counts
    on a log axis, so a hundred frauds beside thousands of normals are both visible and neither
    is inflated; when the tail is long the score axis is symmetric-log (linear near 0, log beyond)."""
    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=float)
    lo, hi = float(s.min()), float(s.max())
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    hi = hi if hi > lo else lo + 1
    if _wide(s):
        from matplotlib.scale import SymmetricalLogTransform

        linthresh = max(1.0, float(np.quantile(np.abs(s), 0.5)))
        ax.set_xscale("symlog", linthresh=linthresh)
        forward = SymmetricalLogTransform(10, linthresh, 1.0)  # the axis's own: bins of equal width on it
        ends = np.asarray(forward.transform_non_affine(np.array([lo, hi], dtype=float)), dtype=float)
        edges = np.asarray(forward.inverted().transform_non_affine(np.linspace(ends[0], ends[1], 61)), dtype=float)
        edges[0], edges[-1] = lo, hi
    else:
        edges = np.linspace(lo, hi, 61)
    for cls, name, color in ((0, "normal", NORMAL_COLOR), (1, "fraud", FRAUD_COLOR)):
        part = s[y == cls]
        if len(part):
            ax.hist(part, bins=list(edges), alpha=0.55, color=color, label=f"{name} ({len(part):,} rows)")
    if threshold is not None:
        above = s > threshold
        ax.axvline(threshold, color=THRESHOLD_COLOR, ls="--",
                   label=f"threshold {threshold:.2f}: flags {int((above & (y == 0)).sum()):,} normal, "
                         f"{int((above & (y == 1)).sum()):,} fraud")
    ax.set_yscale("log")
    ax.set(xlabel="score (negative ELBO, nats; full range" + (", symmetric-log axis)" if _wide(s) else ")"),
           ylabel="rows (log scale)", title="Scores of normal and fraud rows (counts)")
    ax.legend(fontsize="small")


def score_scatter(ax: Axes, labels: np.ndarray, scores: Mapping[str, np.ndarray],
                  thresholds: Mapping[str, float]) -> None:
    """Two models' scores of the same rows against each other (frauds on top), with each model's
    threshold: the four quadrants are the rows both flag, one flags, neither flags."""
    y = np.asarray(labels).astype(int)
    (na, a), (nb, b) = list(scores.items())[:2]
    for axis, s in ((ax.set_xscale, a), (ax.set_yscale, b)):
        if _wide(np.asarray(s, dtype=float)):
            axis("symlog", linthresh=max(1.0, float(np.quantile(np.abs(s), 0.5))))
    ax.scatter(a[y == 0], b[y == 0], s=4, alpha=0.3, color=NORMAL_COLOR, label=f"normal ({int((y == 0).sum()):,})")
    ax.scatter(a[y == 1], b[y == 1], s=12, alpha=0.9, color=FRAUD_COLOR, label=f"fraud ({int((y == 1).sum()):,})")
    ax.axvline(thresholds[na], color=THRESHOLD_COLOR, ls="--", lw=0.8, label="thresholds")
    ax.axhline(thresholds[nb], color=THRESHOLD_COLOR, ls="--", lw=0.8)
    ax.set(xlabel=f"{na} score", ylabel=f"{nb} score", title="Scores of the same rows under both models")
    ax.legend(fontsize="small", markerscale=2)


def alert_overlap(ax: Axes, overlap: Mapping[str, Mapping[str, int]], names: tuple[str, str]) -> None:
    """Alerts both models raise, and only one does, with the frauds among them."""
    keys = ("both", "only_a", "only_b")
    where = ["both", f"only {names[0]}", f"only {names[1]}"]
    x = np.arange(3)
    alerts = [overlap[k]["alerts"] for k in keys]
    frauds = [overlap[k]["frauds"] for k in keys]
    ax.bar(x - 0.2, alerts, width=0.4, color=NORMAL_COLOR, label="alerts")
    ax.bar(x + 0.2, frauds, width=0.4, color=FRAUD_COLOR, label="frauds among them")
    for i in range(3):
        ax.annotate(f"{frauds[i]:,} / {alerts[i]:,}", (x[i], max(alerts[i], frauds[i])), ha="center",
                    va="bottom", fontsize="small")
    ax.set_xticks(x, where)
    ax.set(ylabel="rows", title="Alerts at each model's threshold")
    ax.legend(fontsize="small")


def _score_range(scores: np.ndarray, threshold: float | None) -> tuple[float, float]:
    """Thresholds worth drawing: from the lowest score to the 99.5th percentile (beyond it a
    threshold flags almost nothing), and the model's threshold."""
    lo, hi = np.quantile(scores, [0.0, 0.995])
    if threshold is not None:
        hi = max(hi, threshold * 1.05 if threshold > 0 else threshold + 1)
    return float(lo), float(hi) if hi > lo else float(lo + 1)


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
    ax.plot(cuts, precision, label=f"precision (at this data's {y.mean():.2%} fraud)", color="tab:green")
    ax.plot(cuts, caught / max(len(frauds), 1), label="recall", color=FRAUD_COLOR)
    ax.plot(cuts, flagged / len(everyone), label="alert rate", color="tab:purple")
    if threshold is not None:
        ax.axvline(threshold, color=THRESHOLD_COLOR, ls="--", label=f"threshold {threshold:.2f}")
    ax.set(xlabel="threshold (flag score > threshold), up to the 99.5th percentile score", ylabel="rate",
           ylim=(0, 1.01),
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
