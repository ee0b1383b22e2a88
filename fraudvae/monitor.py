"""Is the threshold still honest? Drift measures over windows of scored rows.

On normal traffic exchangeable with the validation rows, the conformal p-values are uniform and the
alert rate is the target. So, per window of rows:

- the **alert rate**, with its exact (Clopper-Pearson) confidence interval, against the range of
  rates that rows exchangeable with the validation rows give at this threshold. The threshold is
  itself an order statistic of the validation scores, so the share of normal rows above it is not
  the target but a Beta-distributed variable around it (Beta(j + 1, n - j) with j of the n
  validation scores above the cut), and a window's alert count is Beta-Binomial, wider than
  Binomial: checked against the target alone, windows of 10,000 rows on 1,200 validation rows were
  called drift about a quarter of the time at level 0.1%;
- how far the **p-values** depart from uniform: the Kolmogorov-Smirnov statistic and its p-value
  (fraud is rare enough not to matter). The p-values are ranks among the validation scores, so the
  window is compared with a finite sample, not with a known distribution: given the number of
  validation rows, the KS p-value is the two-sample one (effective size n m / (n + m)); the
  one-sample test takes the validation rows' own sampling noise for drift and, with 1,200 validation
  rows and windows of 1,500, rejects exchangeable windows far more often than its level says;
- **per-column drift**: each column's median contribution to the score (nats) against its median on
  the validation rows (`FraudVAE.baseline_`), the columns ranked by how far they moved up.

A window is ``drift`` when its alert count lies outside the expected range (without the number of
validation rows: when the interval excludes the target) or the KS test rejects uniformity, both at
level `MonitorConfig.alpha`; else ``ok``. numpy and scipy only: the service and the command line
share it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from fraudvae.threshold import conformal_rank


@dataclass(frozen=True)
class MonitorConfig:
    alpha: float = 0.001  # level of the alert-rate interval and of the KS test, per window
    top_columns: int = 5  # drifting columns reported per window
    min_rows: int = 100  # a window with fewer rows is reported but never called drift


def alert_rate_interval(alerts: int, rows: int, alpha: float) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) interval for a binomial rate (Clopper-Pearson)."""
    if rows == 0:
        return 0.0, 1.0
    lo = 0.0 if alerts == 0 else float(stats.beta.ppf(alpha / 2, alerts, rows - alerts + 1))
    hi = 1.0 if alerts == rows else float(stats.beta.ppf(1 - alpha / 2, alerts + 1, rows - alerts))
    return lo, hi


def expected_alerts(rows: int, calibration_rows: int, above: int, alpha: float) -> tuple[int, int]:
    """The fewest and most alerts, of `rows` rows exchangeable with `calibration_rows` validation
    scores of which `above` lie above the threshold, that a two-sided test at level `alpha` accepts:
    the alert count is Beta-Binomial(rows, above + 1, calibration_rows - above), and a count is
    outside when either tail beyond it holds less than alpha / 2."""
    j = min(max(above, 0), calibration_rows - 1)
    pmf = stats.betabinom.pmf(np.arange(rows + 1), rows, j + 1, calibration_rows - j)  # closed form, vectorised
    at_most, at_least = np.cumsum(pmf), np.cumsum(pmf[::-1])[::-1]  # (scipy's cdf re-sums per point)
    return int(np.argmax(at_most >= alpha / 2)), int(rows - np.argmax(at_least[::-1] >= alpha / 2))


def window_stats(flags: np.ndarray, p_values: np.ndarray, contributions: np.ndarray, columns: list[str],
                 baseline: np.ndarray, target: float, config: MonitorConfig = MonitorConfig(),
                 calibration_rows: int | None = None, calibration_above: int | None = None) -> dict:
    """The measures of one window: `flags` (n,) bool, `p_values` (n,), `contributions` (n, columns)
    nats with NaN where a value said nothing, `baseline` (columns,) the validation medians, `target`
    the expected alert rate, `calibration_rows` the number of validation scores the threshold and
    the p-values come from (None: a known distribution), `calibration_above` how many of them lie
    above the threshold (None: as many as the split-conformal cut at `target` leaves). JSON-ready."""
    n, alerts = len(flags), int(np.count_nonzero(flags))
    lo, hi = alert_rate_interval(alerts, n, config.alpha)
    expected = None
    if calibration_rows and n:
        if calibration_above is None:
            calibration_above = calibration_rows - conformal_rank(calibration_rows, target)
        low, high = expected_alerts(n, calibration_rows, calibration_above, config.alpha)
        expected = [low / n, high / n]
        outside = not low <= alerts <= high
    else:
        outside = not lo <= target <= hi
    ks = uniformity_test(p_values, calibration_rows) if n else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column missing in every row of the window: NaN
        median = np.nanmedian(contributions, axis=0) if n else np.full(len(columns), np.nan)
    shift = median - baseline
    # the columns that moved most, either way: a column whose values became more usual moved too
    order = [int(j) for j in np.argsort(-np.nan_to_num(np.abs(shift), nan=-np.inf), kind="stable")]
    rate_off = n >= config.min_rows and outside
    reach = (f"the range {expected[0]:.2%}-{expected[1]:.2%} normal rows give at this threshold" if expected
             else f"its interval's reach of the target {target:.2%}")
    uniform_off = ks is not None and n >= config.min_rows and ks[1] < config.alpha
    return {
        "rows": n, "alerts": alerts, "alert_rate": alerts / n if n else None,
        "alert_rate_interval": [lo, hi], "alert_rate_expected": expected, "target": target,
        "ks_statistic": ks[0] if ks is not None else None,
        "ks_p_value": ks[1] if ks is not None else None,
        "status": "drift" if rate_off or uniform_off else "ok" if n else "no data",
        "reasons": ([f"alert rate {alerts / n:.2%} outside {reach}"] if rate_off else [])
                   + (["p-values not uniform"] if uniform_off else []),
        "top_drifting_columns": [{"column": columns[j], "shift_nats": _num(shift[j])}
                                 for j in order[: config.top_columns]],
        "column_shift_nats": {c: _num(s) for c, s in zip(columns, shift, strict=True)},
    }


def uniformity_test(p_values: np.ndarray, calibration_rows: int | None = None) -> tuple[float, float]:
    """(KS statistic, its p-value) of `p_values` against the uniform distribution; with
    `calibration_rows` m, the p-value of the two-sample test of a window of n rows against m
    calibration rows (the asymptotic distribution at the effective size n m / (n + m), as
    `scipy.stats.ks_2samp` computes it for large samples)."""
    ks = stats.kstest(p_values, "uniform")
    if not calibration_rows:
        return float(ks.statistic), float(ks.pvalue)
    n = len(p_values)
    effective = n * calibration_rows / (n + calibration_rows)
    return float(ks.statistic), float(stats.kstwo.sf(ks.statistic, max(1, round(effective))))


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def summarise(windows: list[dict]) -> dict:
    """The overall status and the per-column drift matrix (a heatmap's data) of a list of windows."""
    columns = list(windows[0]["column_shift_nats"]) if windows else []
    return {
        "status": "drift" if any(w["status"] == "drift" for w in windows) else "ok",
        "windows_in_drift": sum(w["status"] == "drift" for w in windows),
        "columns": columns,
        "drift_matrix": [[w["column_shift_nats"][c] for c in columns] for w in windows],  # windows x columns
    }
