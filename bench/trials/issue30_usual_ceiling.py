"""Issue 30's scenario 3, where the ceiling is: how many scenario 3 frauds reach the top 1% when the
test rows are ranked by a customer's "usual" amount alone, estimated in several ways, with every
scenario 1 fraud put first (an oracle: the amount above 220) so that only scenario 3 competes with
the normal rows. A trial, not a benchmark: the first rows use labels (a usual from the customer's
normal training rows), to bound what a label-free usual could give.

    python bench/trials/issue30_usual_ceiling.py --data ../shared/datasets/handbook/transactions_2018-04_05.parquet \
        [--model DIR]   (also the library's own features, from a model fitted with both entity columns,
                         as bench/history.py fits it; its `history_` continues through the test rows)
        [--vae]   (with --model: a VAE on the raw columns and the library's history features of the
                   whole file, as they are and with the customer's usual from its last 64 amounts)

About 4 minutes on the development VM (the last-K estimators loop in Python).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

TRAIN_END = pd.Timestamp("2018-05-16")


def per_customer(df: pd.DataFrame, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """fn(times, amounts) of each customer's transactions in time order, back in the frame's rows."""
    ts = df.TX_DATETIME.to_numpy().astype("datetime64[s]").astype(np.int64).astype(float)
    amount = df.TX_AMOUNT.to_numpy(float)
    out = np.full(len(df), np.nan)
    for _, idx in df.groupby("CUSTOMER_ID").indices.items():
        out[idx] = fn(ts[idx], amount[idx])
    return out


def expanding(_: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Distance from the mean of all earlier amounts, in their standard deviations."""
    k = np.arange(len(a))
    with np.errstate(all="ignore"):
        m = np.cumsum(np.r_[0, a])[:-1] / k
        v = np.cumsum(np.r_[0, a * a])[:-1] / k - m * m
        return (a - m) / np.sqrt(np.maximum(v, 1e-9))


def decayed(days: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Distance from the exponentially decayed mean of earlier amounts (time constant `days`)."""
    def fn(t: np.ndarray, a: np.ndarray) -> np.ndarray:
        out = np.full(len(a), np.nan)
        w = s = q = 0.0
        for i in range(len(a)):
            if i:
                d = np.exp(-(t[i] - t[i - 1]) / (days * 86400))
                w, s, q = w * d, s * d, q * d
            if w > 3:
                m = s / w
                out[i] = (a[i] - m) / np.sqrt(max(q / w - m * m, 1e-9))
            w, s, q = w + 1, s + a[i], q + a[i] * a[i]
        return out
    return fn


Usual = Callable[[np.ndarray, np.ndarray], np.ndarray]


def last_k(k: int, trim: bool, prior: tuple[float, float] | None = None) -> Usual:
    """Distance from the last `k` amounts' median in MADs, or (trim) from the mean and deviation of
    those within 3 MADs of their median, optionally shrunk towards `prior` with the weight of 3."""
    def fn(_: np.ndarray, a: np.ndarray) -> np.ndarray:
        out = np.full(len(a), np.nan)
        for i in range(len(a)):
            w = a[max(0, i - k): i]
            if prior is None and len(w) < 3:
                continue
            n, m, v = 0, 0.0, 0.0
            if len(w):
                med = np.median(w)
                mad = max(1.4826 * np.median(np.abs(w - med)), 0.05 * abs(med) + 1e-3)
                if not trim:
                    out[i] = (a[i] - med) / mad
                    continue
                keep = w[np.abs(w - med) <= 3 * mad]
                n, m, v = len(keep), keep.mean(), keep.var()
            if prior is not None:
                m, v = (n * m + 3 * prior[0]) / (n + 3), (n * v + 3 * prior[1] ** 2) / (n + 3)
            out[i] = (a[i] - m) / np.sqrt(max(v, 1e-12))
        return out
    return fn


def run_of_large(df: pd.DataFrame, z: np.ndarray, days: int) -> np.ndarray:
    """Each row's count of its customer's earlier transactions in the last `days` with z above 2."""
    ts = df.TX_DATETIME.to_numpy().astype("datetime64[s]").astype(np.int64)
    big = (z > 2).astype(float)
    out = np.zeros(len(df))
    for _, idx in df.groupby("CUSTOMER_ID").indices.items():
        t, c = ts[idx], np.r_[0, np.cumsum(big[idx])]
        out[idx] = c[np.searchsorted(t, t, side="left")] - c[np.searchsorted(t, t - days * 86400, side="left")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", help="a model fitted with --entity-column CUSTOMER_ID --entity-column TERMINAL_ID")
    ap.add_argument("--vae", action="store_true")
    a = ap.parse_args()
    df = pd.read_parquet(a.data)
    df["TX_DATETIME"] = pd.to_datetime(df.TX_DATETIME)
    df = df.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    test = (df.TX_DATETIME >= TRAIN_END).to_numpy()
    tdf = df[test]
    top = int(test.sum() * 0.01)
    s1 = (tdf.TX_AMOUNT > 220).to_numpy() * 1e6
    scenario = tdf.TX_FRAUD_SCENARIO.to_numpy()

    def show(name: str, score: np.ndarray) -> None:
        score = np.nan_to_num(score, nan=0.0) + s1
        best = np.argsort(-score, kind="stable")[:top]
        s3 = np.mean(np.isin(np.flatnonzero(scenario == 3), best))
        print(f"{name:<62}AP {average_precision_score(tdf.TX_FRAUD, score):.3f}  S3 {s3:.3f}", flush=True)

    normal = df[~test & (df.TX_FRAUD == 0).to_numpy()].groupby("CUSTOMER_ID").TX_AMOUNT.agg(["mean", "std"])
    stats = df[["CUSTOMER_ID"]].join(normal, on="CUSTOMER_ID")
    oracle = ((df.TX_AMOUNT - stats["mean"]) / stats["std"]).fillna(0).to_numpy()
    show("z, the customer's normal training rows (labels used)", oracle[test])
    for days in (7, 14):
        run = run_of_large(df, oracle, days)[test]
        for c in (0.25, 0.5, 1.0):
            show(f"  + {2 * c:g} log1p(earlier z > 2 in {days}d)", oracle[test] + 2 * c * np.log1p(run))
    show("z, all earlier amounts (frauds too)", per_customer(df, expanding)[test])
    for days in (30, 90):
        show(f"z, earlier amounts decayed over {days}d", per_customer(df, decayed(days))[test])
    for k in (32, 64):
        show(f"last {k} amounts: median and MAD", per_customer(df, last_k(k, False))[test])
        show(f"last {k} amounts: mean and deviation within 3 MADs", per_customer(df, last_k(k, True))[test])
    if a.model:
        from fraudvae import FraudVAE

        det = FraudVAE.load(a.model)
        prior = det.history_.spec.amount_prior
        show("last 64, within 3 MADs, shrunk to the population (weight 3)",
             per_customer(df, last_k(64, True, prior))[test])
        feats = det.with_history(df[test].reset_index(drop=True))
        spec = det.history_.spec
        amount, run_name = spec.amount_names("CUSTOMER_ID")[0], spec.run_names("CUSTOMER_ID")[0]
        beyond, run = feats[amount].to_numpy(float), feats[run_name].to_numpy(float)
        show(f"the library's '{amount}'", beyond)
        for c in (0.5, 1.0, 2.0):
            show(f"  + {c:g} log1p('{run_name}')", beyond + c * np.log1p(run))
        if a.vae:
            vae_trial(df, det, per_customer(df, last_k(64, True, prior)))
    print("reproduce: python bench/trials/issue30_usual_ceiling.py --data " + a.data
          + (f" --model {a.model}" if a.model else "") + (" --vae" if a.vae else ""))


def vae_trial(df: pd.DataFrame, det: object, robust_z: np.ndarray) -> None:
    """A plain FraudVAE (seed 0) fitted on the training rows' raw columns and the library's history
    features (derived over the whole file from an empty state with `det`'s specification), scored
    on the test rows: once as they are, once with the customer's amount feature from `robust_z`
    (beyond 2 spreads, signed, as the library's). The protocol's metrics (bench/history.py)."""
    import sys
    from pathlib import Path

    from fraudvae import FraudVAE
    from fraudvae.history.features import derive
    from fraudvae.history.state import HistoryState

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import history as protocol

    spec = det.history_.spec  # type: ignore[attr-defined]
    feats = pd.DataFrame(derive(spec, df, HistoryState.empty(spec)))
    name = spec.amount_names("CUSTOMER_ID")[0]
    z = np.nan_to_num(robust_z, nan=0.0)
    test = (df.TX_DATETIME >= TRAIN_END).to_numpy()
    for tag, column in (("library's usual", feats[name].to_numpy()),
                        ("last 64 amounts' usual", np.sign(z) * np.maximum(np.abs(z) - 2, 0))):
        x = pd.concat([df.drop(columns=["CUSTOMER_ID", "TERMINAL_ID"]), feats.assign(**{name: column})], axis=1)
        m = FraudVAE(label_column="TX_FRAUD", id_column="TRANSACTION_ID", drop=("TX_FRAUD_SCENARIO",),
                     time_columns=("TX_DATETIME",), seed=0).fit(x[~test])
        scores = m.score(x[test])["score"].to_numpy(float)
        got = protocol.assess(x[test].assign(CUSTOMER_ID=df.CUSTOMER_ID[test].to_numpy()), scores)
        print(f"VAE, {tag}: " + ", ".join(f"{k} {v:.3f}" for k, v in got.items()), flush=True)


if __name__ == "__main__":
    main()
