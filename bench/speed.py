"""Speed, side by side in one run on the same machine.

1. Training: whole-process ``fraudvae fit`` (as a user runs it, imports included) against PyOD's
   ``VAE()`` with its defaults (whole process too) on the same training rows, in turn; then the AP
   of both on the same test rows. Data: an ADBench ``.npz`` split by the one-class protocol
   (shuttle's training split by default). Target: >= 10x faster at equal or better AP.
2. Scoring: ``FraudVAE.score`` on an in-memory frame of 100k mixed-type example transactions
   (preprocessing, forward pass, p-values and explanations included) against a bare forward pass
   of the same network on ready-made tensors, in float32 and in float64 (scoring runs the float32
   network on blocks padded to a multiple of 16 rows, so that a row's score does not depend on the
   batch it is in; float64 where the probe finds this machine's kernels batch-dependent). Prints the
   network's share of scoring's time. Target: >= 0.6 of the bare float32 pass's rows/s
   (``--rows 1000000``).

3. History (with ``--handbook PATH``): whole-process ``fraudvae fit`` + ``fraudvae score`` of the
   Fraud Detection Handbook's 585,177 transactions (fit to 2018-05-15, score the rest) with
   ``--entity-column CUSTOMER_ID --entity-column TERMINAL_ID`` against the same without entities
   (`bench/history.py`, which also prints the quality table). Target: at most 2x.

Usage: python bench/speed.py [--npz ../shared/datasets/adbench/32_shuttle.npz] [--rows 100000]
                             [--handbook ../shared/datasets/handbook/transactions_2018-04_05.parquet]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import split  # noqa: E402

from fraudvae import FraudVAE, example_transactions  # noqa: E402

PYOD = """
import numpy as np, sys
from sklearn.preprocessing import StandardScaler
from pyod.models.vae import VAE
Xtr, Xte = np.load(sys.argv[1]), np.load(sys.argv[2])
sc = StandardScaler().fit(Xtr)
np.save(sys.argv[3], VAE(random_state=0, verbose=0).fit(sc.transform(Xtr)).decision_function(sc.transform(Xte)))
"""


def bench_fit(npz: Path) -> None:
    d = np.load(npz)
    X = pd.DataFrame(d["X"], columns=[f"f{i}" for i in range(d["X"].shape[1])])
    Xtr, Xte, yte = split(X, d["y"].astype(int), 0)
    tmp = Path(tempfile.mkdtemp())
    Xtr.to_csv(tmp / "train.csv", index=False)
    Xte.to_csv(tmp / "test.csv", index=False)
    np.save(tmp / "train.npy", Xtr.to_numpy())
    np.save(tmp / "test.npy", Xte.to_numpy())
    exe = [sys.executable, "-m", "fraudvae"]
    t = time.perf_counter()
    subprocess.run([*exe, "fit", tmp / "train.csv", "--model", tmp / "model", "--seed", "0", "--quiet"],
                   check=True, capture_output=True)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", PYOD, tmp / "train.npy", tmp / "test.npy", tmp / "pyod.npy"],
                   check=True, capture_output=True)
    t_pyod = time.perf_counter() - t
    subprocess.run([*exe, "score", tmp / "test.csv", "--model", tmp / "model", "--output", tmp / "out.csv",
                    "--quiet"], check=True, capture_output=True)
    ap_ours = average_precision_score(yte, pd.read_csv(tmp / "out.csv")["score"])
    ap_pyod = average_precision_score(yte, np.load(tmp / "pyod.npy"))
    print(f"fit, whole process, {len(Xtr)} training rows x {X.shape[1]} ({npz.name}): "
          f"fraudvae {t_ours:.1f} s (AP {ap_ours:.3f}), PyOD VAE() {t_pyod:.1f} s (AP {ap_pyod:.3f}); "
          f"speed-up {t_pyod / t_ours:.1f}x (target >= 10x at AP >= PyOD's)")


def bench_score(rows: int) -> None:
    det = FraudVAE(label_column="is_fraud", id_column="transaction_id", seed=0).fit(
        example_transactions(rows=20_000, seed=0))
    frame = example_transactions(rows=rows, seed=1)
    det.score(frame.head(1000))  # warm-up
    best_full = min(_timed(lambda: det.score(frame)) for _ in range(3))
    tensors = det.preprocessor_.transform(frame).to_tensors(det.device_)
    model = det.model_.eval()
    model64 = copy.deepcopy(model).double()
    numeric, observed, binary, categorical = tensors
    tensors64 = (numeric.double(), observed, binary.double(), categorical)

    @torch.no_grad()
    def bare() -> None:
        model(*tensors, sample=False)
        _sync(det.device_)

    @torch.no_grad()
    def bare64() -> None:
        model64(*tensors64, sample=False)
        _sync(det.device_)

    bare()
    bare64()
    best_bare = min(_timed(bare) for _ in range(3))
    best_bare64 = min(_timed(bare64) for _ in range(3))
    scorer, enc = det._scorer(), det.preprocessor_.transform(frame)
    network = min(_timed(lambda: (scorer.terms(enc), _sync(det.device_))) for _ in range(3))
    path = "float32 blocks" if scorer.fast is not None else "float64 (the probe found batch-dependent kernels)"
    print(f"score {rows} rows in memory ({torch.get_num_threads()} threads, {det.device_}, network in {path}): "
          f"FraudVAE.score {rows / best_full:,.0f} rows/s; bare forward pass float32 {rows / best_bare:,.0f} rows/s, "
          f"float64 {rows / best_bare64:,.0f} rows/s; fraudvae reaches {best_bare / best_full:.2f} of the bare "
          f"float32 pass (target >= 0.6); the network's terms take {network / best_full:.0%} of scoring's time")


def _sync(device: torch.device) -> None:
    """Wait for the GPU's queued work: a CUDA launch returns before its kernels have run."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared/datasets/adbench/32_shuttle.npz"
    ap.add_argument("--npz", type=Path, default=default)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--skip-fit", action="store_true")
    ap.add_argument("--handbook", type=Path, help="the Handbook's parquet file: also time history features")
    a = ap.parse_args()
    if not a.skip_fit:
        bench_fit(a.npz)
    bench_score(a.rows)
    if a.handbook is not None:
        subprocess.run([sys.executable, str(Path(__file__).with_name("history.py")), "--data", str(a.handbook)],
                       check=True)
    print(f"reproduce: python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
