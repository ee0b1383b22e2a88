"""A seeded generator of realistic card transactions with planted fraud.

Normal rows have joint structure: the amount depends on the merchant category, the channel on
the category, card presence on the channel, the hour on the channel, and three risk features are
correlated. Frauds break that structure rather than one column's range: a typical amount for the
wrong category at night, a card-present purchase abroad online, risk features that disagree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORIES = {  # name: (share, log-amount mean, log-amount sd, share online)
    "grocery": (0.30, 3.4, 0.5, 0.05),
    "fuel": (0.18, 3.9, 0.3, 0.0),
    "restaurant": (0.16, 3.3, 0.5, 0.10),
    "online_retail": (0.20, 4.0, 0.8, 1.0),
    "travel": (0.06, 6.0, 0.6, 0.7),
    "electronics": (0.10, 5.2, 0.7, 0.5),
}
COUNTRIES = (["US", "CA", "MX", "GB"], [0.88, 0.06, 0.04, 0.02])
FRAUD_COUNTRIES = ["NG", "RU", "BR", "VN", "RO"]


def _normal(n: int, rng: np.random.Generator) -> pd.DataFrame:
    names = list(CATEGORIES)
    share = np.array([CATEGORIES[c][0] for c in names])
    cat = rng.choice(names, n, p=share / share.sum())
    mu = np.array([CATEGORIES[c][1] for c in cat])
    sd = np.array([CATEGORIES[c][2] for c in cat])
    online = rng.random(n) < np.array([CATEGORIES[c][3] for c in cat])
    channel = np.where(online, "online", np.where(rng.random(n) < 0.03, "atm", "pos"))
    hour = np.where(online, rng.normal(20, 3, n), rng.normal(13, 3.5, n)) % 24
    age = np.clip(rng.normal(42, 13, n), 18, 90).round()
    z = rng.normal(size=(n, 3))
    risk_1 = z[:, 0]
    risk_2 = 0.8 * z[:, 0] + 0.6 * z[:, 1]
    risk_3 = 0.5 * z[:, 0] - 0.5 * z[:, 1] + 0.7 * z[:, 2]
    device_trust = np.where(online, np.clip(rng.normal(0.8, 0.1, n), 0, 1), np.nan)
    return pd.DataFrame({
        "amount": np.exp(mu + rng.normal(0, 1, n) * sd).round(2),
        "merchant_category": cat,
        "hour": hour.astype(int),
        "channel": channel,
        "country": rng.choice(COUNTRIES[0], n, p=COUNTRIES[1]),
        "card_present": ~online,
        "customer_age": age,
        "risk_1": risk_1.round(4), "risk_2": risk_2.round(4), "risk_3": risk_3.round(4),
        "device_trust": device_trust.round(3),
    })


def _plant_fraud(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(df)
    kind = rng.integers(0, 4, n)
    df = df.copy()
    m = kind == 0  # big amount for a cheap category, at night
    df.loc[m, "amount"] = (df.loc[m, "amount"] * rng.uniform(6, 15, m.sum())).round(2)
    df.loc[m, "hour"] = rng.integers(1, 5, m.sum())
    m = kind == 1  # card "present" yet online from an unusual country
    df.loc[m, "country"] = rng.choice(FRAUD_COUNTRIES, m.sum())
    df.loc[m, "channel"] = "online"
    df.loc[m, "card_present"] = True
    m = kind == 2  # risk features that contradict each other
    df.loc[m, "risk_2"] = (-1.2 * df.loc[m, "risk_1"] + rng.normal(0, 0.2, m.sum())).round(4)
    m = kind == 3  # online with an untrusted device and an electronics-sized amount elsewhere
    df.loc[m, "channel"] = "online"
    df.loc[m, "card_present"] = False
    df.loc[m, "device_trust"] = rng.uniform(0.0, 0.3, m.sum()).round(3)
    df.loc[m, "amount"] = np.exp(rng.normal(5.5, 0.3, m.sum())).round(2)
    return df


def example_transactions(rows: int = 10_000, fraud_rate: float = 0.02, seed: int = 0) -> pd.DataFrame:
    """`rows` card transactions, a share `fraud_rate` of them fraud (column ``is_fraud``), with a
    unique ``transaction_id`` and a few gaps (missing ``device_trust`` off-line, a few missing ages)."""
    if rows < 1 or not 0 <= fraud_rate < 1:
        raise ValueError(f"need rows >= 1 and 0 <= fraud_rate < 1, got rows={rows}, fraud_rate={fraud_rate}")
    rng = np.random.default_rng(seed)
    n_fraud = int(round(rows * fraud_rate))
    normal = _normal(rows - n_fraud, rng)
    fraud = _plant_fraud(_normal(n_fraud, rng), rng)
    df = pd.concat([normal.assign(is_fraud=0), fraud.assign(is_fraud=1)], ignore_index=True)
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    df.loc[rng.random(len(df)) < 0.01, "customer_age"] = np.nan
    df.insert(0, "transaction_id", [f"tx{100000 + i}" for i in range(len(df))])
    return df
