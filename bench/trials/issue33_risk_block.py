"""Issue 33 trial: the confirmed-fraud features in a latent of their own. A VAE whose latent and
decoder are split in two blocks (the transaction with its history features; the entities' fraud
shares) has as negative ELBO the sum of the two blocks' negative ELBOs, so the trial fits them as two
models and adds their scores: issue 30's model (entities, no labels) and a model of the fraud shares
alone, on the training file's normal rows, against the default model with labels, on the Handbook
protocol of `bench/history.py --label-delay 7d`.

    python bench/trials/issue33_risk_block.py --data ../shared/datasets/handbook/transactions_2018-04_05.parquet \
        [--seed S]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent.parent))
from history import assess, run, split  # noqa: E402

from fraudvae import FraudVAE  # noqa: E402
from fraudvae.history import HistoryState, derive  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    train, test = split(a.data, tmp)
    entities = ["--entity-column", "CUSTOMER_ID", "--entity-column", "TERMINAL_ID"]
    plain, _ = run(tmp, "entities", entities, a.seed)
    joint, _ = run(tmp, "labels", [*entities, "--label-delay", "7d"], a.seed)
    spec = FraudVAE.load(tmp / "labels").history_.spec
    shares = [n for n in spec.names() if n in spec.risk_names("CUSTOMER_ID") + spec.risk_names("TERMINAL_ID")]
    state = HistoryState.empty(spec)  # the training file's features as fit derives them, then the test file's
    before, after = derive(spec, train, state), derive(spec, test, state)
    normal = train.TX_FRAUD.to_numpy() == 0
    block = FraudVAE(seed=a.seed).fit(pd.DataFrame({n: before[n] for n in shares})[normal])
    risk = np.asarray(block.score(pd.DataFrame({n: after[n] for n in shares}))["score"], float)
    rows = {"entities, no labels": plain, "labels, one latent (default)": joint, "fraud shares alone": risk,
            "the two blocks' sum": plain + risk}
    for name, s in rows.items():
        print(f"{name:<30}" + " ".join(f"{k} {v:.3f}" for k, v in assess(test, s).items()))
    print(f"reproduce: python bench/trials/issue33_risk_block.py --data {a.data} --seed {a.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
