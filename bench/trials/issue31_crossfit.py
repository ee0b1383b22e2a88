"""Issue 31 trial, outside the library: cross-fitting (K-fold) instead of one random validation
share, measured through `bench/quality.py` on the same splits and metrics.

The training normals are cut into K seeded folds; model k is fitted on the other folds with fold k
as its validation rows (early stopping, decoder variances), so every normal row trains K - 1
models and validates one. The score of a test row is the mean of the K models' negative ELBOs (an
ensemble of VAEs: the score stays a VAE's negative ELBO, averaged). The threshold is cross-conformal:
the (1 - target) quantile of every training row's out-of-fold score (model k on fold k), pooled.

    python bench/trials/issue31_crossfit.py --folds 5 -- DATASETS... [quality.py's options]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import quality  # noqa: E402  (bench/ is not a package)

from fraudvae import FraudVAE  # noqa: E402

LIBRARY_RUN = quality.run


def crossfit(Xtr: pd.DataFrame, Xte: pd.DataFrame, seed: int, folds: int,
             params: dict) -> tuple[np.ndarray, np.ndarray]:
    fold = np.random.default_rng(seed).permutation(len(Xtr)) % folds
    scores, oof = [], []
    for k in range(folds):
        held = fold == k
        df = pd.concat([Xtr[~held], Xtr[held]], ignore_index=True)  # fold k last: `validation="tail"` takes it
        det = FraudVAE(seed=seed + k, validation="tail", validation_fraction=held.sum() / len(Xtr),
                       **params).fit(df)
        scores.append(det.score_samples(Xte))
        oof.append(det.score_samples(Xtr[held]))
    threshold = np.quantile(np.concatenate(oof), 0.99)
    score = np.mean(scores, axis=0)
    return score, score > threshold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])

    def run(method: str, Xtr: pd.DataFrame, Xte: pd.DataFrame, seed: int, params: dict | None = None):
        if method != "fraudvae":
            return LIBRARY_RUN(method, Xtr, Xte, seed, params)
        return crossfit(Xtr, Xte, seed, a.folds, params or {})

    quality.run = run
    sys.argv = [" ".join([sys.argv[0], *argv[:cut], "--"]), *argv[cut + 1:]]
    quality.main()


if __name__ == "__main__":
    main()
