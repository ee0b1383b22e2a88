"""History features on the Fraud Detection Handbook's simulated card transactions: fraudvae with
`--entity-column CUSTOMER_ID --entity-column TERMINAL_ID` against fraudvae without entities (the
ids dropped), both as a user runs them (`fraudvae fit` then `fraudvae score`, whole processes,
timed), on the same split and machine.

Protocol (as ../shared/checks/history.py): fit on 2018-04-01..05-15 (rows labelled fraud kept out of
training; they count in every entity's history), score 2018-05-16..31 continuing the history saved
with the model. Metrics: AP, AUC-ROC, card precision at 100 a day (the Handbook's
card_precision_top_k), and the share of each fraud scenario's frauds among the top 1% of scores.

    python bench/history.py --data ../shared/datasets/handbook/transactions_2018-04_05.parquet \
        [--drop "TERMINAL_ID: new CUSTOMER_ID" ...]   (an ablation: history features left out by name)
        [--label-delay 7d]   (also confirmed frauds as history, labels known 7 days after the fact)
        [--seed S]   (fraudvae fit --seed; quality is claimed on seeds 0-4)
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

TRAIN_END = pd.Timestamp("2018-05-16")


def card_precision(test: pd.DataFrame, scores: np.ndarray, k: int = 100) -> float:
    """Per day, each card's highest score; the share of the k highest cards with a fraud that day
    (cards found on an earlier day leave); averaged over days."""
    pred = pd.DataFrame({"day": test.TX_DATETIME.dt.floor("D").to_numpy(), "card": test.CUSTOMER_ID.to_numpy(),
                         "fraud": test.TX_FRAUD.to_numpy(), "s": scores})
    found: set = set()
    per_day = []
    for _, d in pred.groupby("day"):
        d = d[~d.card.isin(found)].groupby("card")[["s", "fraud"]].max().sort_values("s", ascending=False).head(k)
        hit = set(d.index[d.fraud == 1])
        per_day.append(len(hit) / k)
        found |= hit
    return float(np.mean(per_day))


def assess(test: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    y, scenario = test.TX_FRAUD.to_numpy(), test.TX_FRAUD_SCENARIO.to_numpy()
    top = np.zeros(len(y), bool)
    top[np.argsort(-scores, kind="stable")[: math.ceil(0.01 * len(y))]] = True
    out = {"AP": average_precision_score(y, scores), "AUC": roc_auc_score(y, scores),
           "CP@100": card_precision(test, scores)}
    out.update({f"S{s}@1%": float(top[scenario == s].mean()) for s in (1, 2, 3)})
    return out


def split(data: str, tmp: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The protocol's training and test rows of the Handbook's file, also written to `tmp` as
    train.parquet and test.parquet (what `run` fits on and scores)."""
    df = pd.read_parquet(data)
    df["TX_DATETIME"] = pd.to_datetime(df.TX_DATETIME)
    train, test = df[df.TX_DATETIME < TRAIN_END], df[df.TX_DATETIME >= TRAIN_END]
    train.to_parquet(tmp / "train.parquet", index=False)
    test.to_parquet(tmp / "test.parquet", index=False)
    return train, test


def run(tmp: Path, tag: str, flags: list[str], seed: int = 0) -> tuple[np.ndarray, float]:
    fraudvae = [sys.executable, "-m", "fraudvae"]
    common = ["--label-column", "TX_FRAUD", "--id-column", "TRANSACTION_ID", "--drop", "TX_FRAUD_SCENARIO",
              "--seed", str(seed), "--quiet", "--time-column", "TX_DATETIME"]
    t = time.perf_counter()
    subprocess.run([*fraudvae, "fit", str(tmp / "train.parquet"), "--model", str(tmp / tag), *common, *flags],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*fraudvae, "score", str(tmp / "test.parquet"), "--model", str(tmp / tag), "--output",
                    str(tmp / f"{tag}.csv"), "--quiet"], check=True, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t
    return pd.read_csv(tmp / f"{tag}.csv")["score"].to_numpy(float), seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the Handbook's transactions_2018-04_05.parquet")
    ap.add_argument("--drop", action="append", default=[], metavar="FEATURE",
                    help="leave a history feature out of the entities' model (repeatable)")
    ap.add_argument("--skip-plain", action="store_true", help="only the model with entities")
    ap.add_argument("--label-delay", metavar="SPAN",
                    help="also a model with confirmed frauds as history (fit --label-delay SPAN, e.g. 7d)")
    ap.add_argument("--seed", type=int, default=0, help="fraudvae fit --seed (the protocol's seeds are 0-4)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    train, test = split(a.data, tmp)
    print(f"train {len(train):,} rows to {TRAIN_END:%Y-%m-%d}, test {len(test):,} rows "
          f"({int(test.TX_FRAUD.sum())} frauds: " +
          ", ".join(f"scenario {s} {int((test.TX_FRAUD_SCENARIO == s).sum())}" for s in (1, 2, 3)) + ")")
    rows = {}
    t_plain = float("nan")
    if not a.skip_plain:
        plain, t_plain = run(tmp, "plain", ["--drop", "CUSTOMER_ID", "--drop", "TERMINAL_ID"], a.seed)
        rows["fraudvae, no entities"] = assess(test, plain)
    dropped = [x for d in a.drop for x in ("--drop", d)]
    entities = ["--entity-column", "CUSTOMER_ID", "--entity-column", "TERMINAL_ID"]
    hist, t_hist = run(tmp, "history", [*entities, *dropped], a.seed)
    rows["fraudvae, entities" + (f" less {len(a.drop)}" if a.drop else "")] = assess(test, hist)
    t_risk = float("nan")
    if a.label_delay:
        risk, t_risk = run(tmp, "risk", [*entities, "--label-delay", a.label_delay, *dropped], a.seed)
        rows[f"fraudvae, labels {a.label_delay}"] = assess(test, risk)
    keys = list(next(iter(rows.values())))
    print(f"{'method':<24}" + "".join(f"{k:>8}" for k in keys))
    for name, m in rows.items():
        print(f"{name:<24}" + "".join(f"{m[k]:8.3f}" for k in keys))
    print(f"fit + score, whole processes: {t_hist:.1f} s with entities, {t_plain:.1f} s without "
          f"({t_hist / t_plain:.2f}x)" + (f"; {t_risk:.1f} s with labels ({t_risk / t_plain:.2f}x)"
                                           if a.label_delay else ""))
    print("reproduce: python bench/history.py --data " + " ".join([str(a.data), *(f'--drop "{d}"' for d in a.drop),
                                                                   *(["--skip-plain"] if a.skip_plain else []),
                                                                   *([f"--seed {a.seed}"] if a.seed else []),
                                                                   *([f"--label-delay {a.label_delay}"]
                                                                     if a.label_delay else [])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
