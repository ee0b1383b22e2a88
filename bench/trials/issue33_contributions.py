"""Where the scores of the model with confirmed frauds as history come from (issue 33): the
Handbook protocol of `bench/history.py --label-delay 7d` (seed 0), then `FraudVAE.explain` on the
test rows; prints each scenario's share above the top-1% cut and the median contribution (nats) of
every column that gives some row group more than 1 nat.

    python bench/trials/issue33_contributions.py --data ../shared/datasets/handbook/transactions_2018-04_05.parquet \
        [--no-labels]   (the model with entities only, for comparison)
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent.parent))
from history import run, split  # noqa: E402

from fraudvae import FraudVAE  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--no-labels", action="store_true", help="the model with entities only (issue 30's)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    _, test = split(a.data, tmp)
    run(tmp, "m", ["--entity-column", "CUSTOMER_ID", "--entity-column", "TERMINAL_ID",
                   *([] if a.no_labels else ["--label-delay", "7d"])])  # bench/history.py's fit (and score)
    ex = FraudVAE.load(tmp / "m").explain(test.drop(columns=["TX_FRAUD_SCENARIO"]))
    score = ex.sum(axis=1).to_numpy()
    cut = np.sort(score)[-math.ceil(0.01 * len(score))]
    scenario = test.TX_FRAUD_SCENARIO.to_numpy()
    top = score >= cut
    print(f"top 1% from {cut:.1f} nats")
    for s in (0, 1, 2, 3):
        m = scenario == s
        print(f"scenario {s}: {int(m.sum())} rows, {int((top & m).sum())} in the top 1%, median score "
              f"{np.median(score[m]):.1f}")
    groups = {"scenario 1": ex[scenario == 1], "normal, top 1%": ex[top & (scenario == 0)],
              "scenario 2, top 1%": ex[top & (scenario == 2)], "scenario 3, top 1%": ex[top & (scenario == 3)]}
    table = pd.DataFrame({name: g.median() for name, g in groups.items()})
    print(table[table.abs().max(axis=1) > 1].round(1).to_string())
    print("reproduce: python bench/trials/issue33_contributions.py --data " + a.data
          + (" --no-labels" if a.no_labels else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
