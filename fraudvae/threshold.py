"""Thresholds and p-values from validation scores of normal rows (numpy only).

Scores point one way everywhere: higher = more suspicious. A row is flagged when its score is
strictly above the threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from fraudvae.errors import ConfigError, DataError

QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.995, 0.999)


@dataclass(frozen=True)
class Threshold:
    """A calibrated cut on the score, with the validation scores it came from."""

    value: float
    method: str  # "target_fpr" or "alert_rate"
    target: float  # the false-positive rate (or share of rows alerted) asked for
    validation_scores: tuple[float, ...]  # sorted, normal rows only

    @cached_property
    def _sorted(self) -> np.ndarray:
        return np.asarray(self.validation_scores, dtype=np.float64)

    @property
    def above(self) -> int:
        """How many validation normals lie above the threshold."""
        return int(np.count_nonzero(self._sorted > self.value))

    @property
    def expected_fpr(self) -> float:
        """Share of validation normals above the threshold."""
        return self.above / len(self._sorted)

    def quantiles(self) -> dict[str, float]:
        return {f"q{q:g}": float(np.quantile(self._sorted, q)) for q in QUANTILES}

    def p_values(self, scores: np.ndarray) -> np.ndarray:
        """Conformal p-value of each score: (1 + #validation scores >= it) / (1 + #validation).

        Small means unusual among normal rows; never exactly 0."""
        v = self._sorted
        at_or_above = len(v) - np.searchsorted(v, np.asarray(scores), side="left")
        return (1.0 + at_or_above) / (1.0 + len(v))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Threshold:
        return cls(float(d["value"]), d["method"], float(d["target"]), tuple(map(float, d["validation_scores"])))


def conformal_rank(n: int, target: float) -> int:
    """The rank (1-based, among n sorted validation scores) of the split-conformal cut at `target`:
    ceil((n + 1)(1 - target)), the highest score when n is too small for the guarantee."""
    # the small tolerance keeps (n + 1)(1 - target) from rounding up past an exact integer
    return min(n, max(1, math.ceil((n + 1) * (1.0 - target) - 1e-9)))


def rows_needed(target: float) -> int:
    """The fewest validation rows for which the split-conformal cut at `target` is an order statistic
    below the highest score (n >= 1/target - 1): with fewer, the cut is the maximum and the rate it
    gives is 1/(n + 1), whatever the target."""
    return max(1, math.ceil(1.0 / target - 1.0 - 1e-9))


def calibrate(validation_scores: np.ndarray, target_fpr: float | None = None,
              alert_rate: float | None = None) -> Threshold:
    """The cut that flags at most a share `target_fpr` of normal rows (default 1%), set on
    validation normals the split-conformal way.

    The threshold is the ceil((n + 1)(1 - target))-th smallest of the n validation scores: a fresh
    normal row exchangeable with them lands above it with probability at most `target`, and a row
    is flagged exactly when its conformal p-value (`Threshold.p_values`) is at most `target` (ties
    aside). The plain empirical quantile undershoots on small validation sets: with 250 rows its 1%
    cut sits between the 2nd and 3rd highest score. With fewer than 1/target - 1 rows no order
    statistic gives the guarantee, and the highest validation score is the cut.

    `alert_rate` is the same cut read as a budget: the share of traffic the team can review
    (with frauds rare, nearly all traffic is normal). Give one or the other."""
    if target_fpr is not None and alert_rate is not None:
        raise ConfigError("give target_fpr or alert_rate, not both")
    if alert_rate is not None:
        method, target = "alert_rate", alert_rate
    else:
        method, target = "target_fpr", 0.01 if target_fpr is None else target_fpr
    if not 0 < target < 1:
        raise ConfigError(f"{method}={target!r} is not allowed (must be in (0, 1))")
    v = np.sort(np.asarray(validation_scores, dtype=np.float64))
    if len(v) == 0 or not np.isfinite(v).all():
        raise DataError("calibration needs at least one finite validation score")
    value = float(v[conformal_rank(len(v), target) - 1])
    return Threshold(value, method, float(target), tuple(float(x) for x in v))
