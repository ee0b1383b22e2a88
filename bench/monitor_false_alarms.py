"""How often the monitor calls an exchangeable window drift on its alert rate alone, side by side:
the Beta-Binomial range it uses (the threshold's own noise allowed for) against the Clopper-Pearson
interval checked against the target (the check it replaced). Normal scores, a split-conformal 1%
threshold on n validation rows, windows of m fresh rows from the same distribution; a test at level
alpha should call about alpha of them drift.

Usage: python bench/monitor_false_alarms.py [--windows 2000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fraudvae.monitor import MonitorConfig, window_stats  # noqa: E402
from fraudvae.threshold import calibrate  # noqa: E402


def rate_off(stats: dict) -> bool:
    return any(reason.startswith("alert rate") for reason in stats["reasons"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=2000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    print("validation rows,window rows,alpha,drift calls: against the target,drift calls: Beta-Binomial range")
    for n, m in ((250, 1500), (1200, 1500), (1200, 10_000), (6000, 10_000)):
        for alpha in (0.01, 0.001):
            config, naive, exact = MonitorConfig(alpha=alpha), 0, 0
            for _ in range(a.windows):
                t = calibrate(rng.normal(size=n), target_fpr=0.01)
                flags = rng.normal(size=m) > t.value
                args = (flags, np.full(m, 0.5), np.zeros((m, 1)), ["x"], np.zeros(1), t.target, config)
                naive += rate_off(window_stats(*args))
                exact += rate_off(window_stats(*args, calibration_rows=n, calibration_above=t.above))
            print(f"{n},{m},{alpha},{naive / a.windows:.2%},{exact / a.windows:.2%}", flush=True)
    print(f"reproduce: python bench/monitor_false_alarms.py --windows {a.windows}")


if __name__ == "__main__":
    main()
