"""What investigators can review: alerts per day. Precision at K per day (the K highest-scoring rows
of each day are the day's alerts: Dal Pozzolo et al.'s card precision, the Fraud Detection
Handbook's), and the day's alert volume at the model's threshold against that budget."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraudvae.readers import time_column


def day_of(values: pd.Series, column: str) -> np.ndarray:
    """Each row's calendar day (YYYY-MM-DD), as written, from a time column (read as `fit` reads one:
    `fraudvae.readers.time_column`)."""
    return time_column(values, column).dt.strftime("%Y-%m-%d").to_numpy()


def card_precision(scores: np.ndarray, labels: np.ndarray, days: np.ndarray, cards: np.ndarray, k: int) -> dict:
    """The Fraud Detection Handbook's card precision at `k`: per day, each card's highest score and
    whether it had a fraud that day; the share of frauds among the `k` highest cards; cards found
    compromised on an earlier day leave (they are blocked); averaged over days. JSON-ready."""
    frame = pd.DataFrame({"day": days, "card": cards, "s": scores, "fraud": labels})
    found: set = set()
    per_day = []
    for day, rows in frame.groupby("day", sort=True):
        best = rows[~rows["card"].isin(found)].groupby("card")[["s", "fraud"]].max()
        top = best.sort_values("s", ascending=False, kind="stable").head(k)
        hits = set(top.index[top["fraud"] == 1])
        per_day.append({"day": str(day), "precision": len(hits) / k})
        found |= hits
    p = np.array([d["precision"] for d in per_day])
    return {"mean_card_precision_at_k": float(p.mean()) if len(p) else None, "card_precision_per_day": per_day}


def daily_metrics(scores: np.ndarray, labels: np.ndarray, days: np.ndarray, threshold: float, k: int) -> dict:
    """Per day: precision at `k` (frauds among the day's `k` highest scores, ties in file order, over
    min(k, the day's rows)), the alerts the threshold raises and the frauds among them; then the mean
    and spread over days and how many days the threshold's alerts exceed the budget. JSON-ready."""
    records = []
    for day in sorted(set(days.tolist())):
        at = np.flatnonzero(days == day)
        s, y = scores[at], labels[at]
        top = np.argsort(-s, kind="stable")[:k]
        flagged = s > threshold
        records.append({"day": day, "rows": len(at), "frauds": int(y.sum()),
                        "precision_at_k": float(y[top].sum() / len(top)), "frauds_in_top_k": int(y[top].sum()),
                        "alerts_at_threshold": int(flagged.sum()), "frauds_caught_at_threshold": int(y[flagged].sum()),
                        "over_budget": bool(flagged.sum() > k)})
    p = np.array([r["precision_at_k"] for r in records])
    alerts = np.array([r["alerts_at_threshold"] for r in records])
    return {
        "alerts_per_day": k, "days": len(records),
        "mean_precision_at_k": float(p.mean()) if len(p) else None,
        "std_precision_at_k": float(p.std()) if len(p) else None,
        "min_precision_at_k": float(p.min()) if len(p) else None,
        "max_precision_at_k": float(p.max()) if len(p) else None,
        "mean_alerts_at_threshold": float(alerts.mean()) if len(alerts) else None,
        "days_over_budget": int(sum(r["over_budget"] for r in records)),
        "per_day": records,
    }
