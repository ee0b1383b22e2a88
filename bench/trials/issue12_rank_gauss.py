"""Issue 12, seventh session: a rank-Gauss marginal transform of every numeric column before fraudvae
(not kept; bench/RESULTS.md).

Each column with at least three distinct training values is mapped through its training rows'
mid-rank normal scores (interpolated between distinct values; beyond the training range extended
linearly with the slope of the outermost `TAIL` share of distinct values, so a value past the range
still scores by how far past it is), then handed to `FraudVAE` as the raw column, whose own
preprocessing runs as usual. `MIX` < 1 blends the normal score with the plain standardized value.
Peers are untouched. From the project root:

    python bench/trials/issue12_rank_gauss.py ../shared/datasets/adbench/*.npz --seeds 0 \
        --methods fraudvae --jobs 2
    MIX=0.5 python bench/trials/issue12_rank_gauss.py ../shared/datasets/adbench/*.npz --seeds 0 \
        --methods fraudvae --jobs 2
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import quality  # noqa: E402

TAIL = float(os.environ.get("TAIL", "0.05"))
MIX = float(os.environ.get("MIX", "1.0"))
Map = tuple[np.ndarray, np.ndarray, float, float, float, float]


def fit_map(x: np.ndarray) -> Map | None:
    x = x[np.isfinite(x)]
    values, counts = np.unique(x, return_counts=True)
    if values.size < 3:
        return None
    cum = np.cumsum(counts)
    z = norm.ppf((cum - counts / 2) / cum[-1])
    k = max(2, int(np.ceil(TAIL * values.size)))
    low = (z[k - 1] - z[0]) / (values[k - 1] - values[0])
    high = (z[-1] - z[-k]) / (values[-1] - values[-k])
    return values, z, low, high, float(x.mean()), float(x.std()) or 1.0


def apply(m: Map, x: np.ndarray) -> np.ndarray:
    values, z, low, high, mean, sd = m
    out = np.interp(x, values, z)
    out = np.where(x < values[0], z[0] + (x - values[0]) * low, out)
    out = np.where(x > values[-1], z[-1] + (x - values[-1]) * high, out)
    return MIX * out + (1 - MIX) * (x - mean) / sd


_run = quality.run


def run(method: str, Xtr: pd.DataFrame, Xte: pd.DataFrame, seed: int,
        params: dict | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if method == "fraudvae":
        Xtr, Xte = Xtr.copy(), Xte.copy()
        for c in Xtr.columns:
            m = fit_map(Xtr[c].to_numpy(float))
            if m is not None:
                Xtr[c], Xte[c] = apply(m, Xtr[c].to_numpy(float)), apply(m, Xte[c].to_numpy(float))
    return _run(method, Xtr, Xte, seed, params)


quality.run = run

if __name__ == "__main__":
    quality.main()
