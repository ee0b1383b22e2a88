"""Fit time and test AP of `FraudVAE.fit` on each device this machine has (cpu, then cuda when
present), in-process after a warm-up fit, on an ADBench .npz split by the one-class protocol
(`bench/quality.py`'s `split`, seed 0); then `FraudVAE.score` rows/s on example transactions.

Usage: python bench/device_fit.py [--npz ../shared/datasets/adbench/32_shuttle.npz] [--rows 100000,1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import split  # noqa: E402

from fraudvae import FraudVAE, example_transactions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared/datasets/adbench/32_shuttle.npz")
    ap.add_argument("--rows", default="100000,1000000")
    a = ap.parse_args()
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    d = np.load(a.npz)
    X = pd.DataFrame(d["X"], columns=[f"f{i}" for i in range(d["X"].shape[1])])
    Xtr, Xte, yte = split(X, d["y"], 0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f", {torch.cuda.get_device_name(0)}" if "cuda" in devices else ", no GPU"))
    for dev in devices:
        FraudVAE(seed=0, epochs=2, device=dev).fit(Xtr.iloc[:2000])  # warm-up
        t = time.perf_counter()
        m = FraudVAE(seed=0, device=dev).fit(Xtr)
        seconds = time.perf_counter() - t
        print(f"{dev}: fit {a.npz.name} ({len(Xtr)} rows) {seconds:.2f} s, {m.metrics_['epochs_run']} epochs, "
              f"test AP {average_precision_score(yte, m.score_samples(Xte)):.4f}")
    fitted = {dev: FraudVAE(label_column="is_fraud", id_column="transaction_id", seed=0, device=dev).fit(
        example_transactions(rows=20_000, seed=0)) for dev in devices}
    for rows in map(int, a.rows.split(",")):
        frame = example_transactions(rows=rows, seed=1)
        for dev, m in fitted.items():
            m.score(frame.head(1000))
            best = np.inf
            for _ in range(3):
                t = time.perf_counter()
                m.score(frame)
                best = min(best, time.perf_counter() - t)
            print(f"{dev}: FraudVAE.score {rows} rows: {rows / best:,.0f} rows/s")
    print(f"reproduce: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
