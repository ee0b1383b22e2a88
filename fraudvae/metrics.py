"""Detection metrics for labelled rows (scikit-learn's, imported lazily: it is slow to import)."""

from __future__ import annotations

import numpy as np


def metrics_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float | int]:
    """Precision, recall, F1, false-positive rate and confusion counts of ``score > threshold``,
    plus the threshold-free AUC-ROC and average precision when both classes are present."""
    from sklearn.metrics import (
        average_precision_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y = np.asarray(labels).astype(int)
    s = np.asarray(scores, dtype=float)
    flag = (s > threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, flag, labels=[0, 1]).ravel())
    p, r, f1, _ = precision_recall_fscore_support(y, flag, average="binary", zero_division=0)
    out: dict[str, float | int] = {"precision": float(p), "recall": float(r), "f1": float(f1),
                                   "fpr": fp / (fp + tn) if fp + tn else 0.0,
                                   "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    if 0 < y.sum() < len(y):
        out["auc_roc"] = float(roc_auc_score(y, s))
        out["average_precision"] = float(average_precision_score(y, s))
    return out


def recall_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> dict[str, float]:
    """The best recall with a false-positive rate at most `fpr` on these rows, and the score cut that
    gives it (flag ``score >= threshold``). A threshold chosen on the labelled rows themselves: what
    the model could do, not what its stored threshold does."""
    from sklearn.metrics import roc_curve

    f, t, cut = roc_curve(np.asarray(labels).astype(int), np.asarray(scores, dtype=float))
    i = int(np.flatnonzero(f <= fpr)[-1])  # roc_curve's FPR is non-decreasing; its first point is (0, 0)
    threshold = float(cut[i]) if np.isfinite(cut[i]) else None  # None: no row can be flagged
    return {"recall": float(t[i]), "fpr": float(f[i]), "threshold": threshold}  # type: ignore[dict-item]


def natural_weights(labels: np.ndarray, fraud_rate: float) -> np.ndarray:
    """Per-row weights that make the labelled rows stand for traffic at `fraud_rate`: frauds weigh 1,
    normals as many as the rate needs (an enriched test set's normals count for more)."""
    y = np.asarray(labels).astype(int)
    n1, n0 = int(y.sum()), int((y == 0).sum())
    return np.where(y == 1, 1.0, n1 * (1 - fraud_rate) / (fraud_rate * max(n0, 1)))
