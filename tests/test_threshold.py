import numpy as np
import pytest

from fraudvae.errors import ConfigError
from fraudvae.threshold import Threshold, calibrate


def test_fpr_threshold_flags_the_target_share():
    v = np.random.default_rng(0).normal(size=10_000)
    t = calibrate(v, target_fpr=0.05)
    assert abs(t.expected_fpr - 0.05) < 0.001
    fresh = np.random.default_rng(1).normal(size=100_000)
    assert abs((fresh > t.value).mean() - 0.05) < 0.005


def test_p_values_are_conformal():
    t = calibrate(np.arange(1.0, 100.0), target_fpr=0.1)
    p = t.p_values(np.array([0.0, 50.0, 1000.0]))
    assert p[0] == 1.0
    assert p[1] == pytest.approx((1 + 50) / 100)
    assert p[2] == pytest.approx(1 / 100)


def test_round_trip():
    t = calibrate(np.linspace(0, 1, 50), alert_rate=0.02)
    assert Threshold.from_dict(t.to_dict()) == t and t.method == "alert_rate"


@pytest.mark.parametrize("kw", [{"target_fpr": 0.0}, {"target_fpr": 1.5}, {"target_fpr": 0.1, "alert_rate": 0.1}])
def test_bad_targets(kw):
    with pytest.raises(ConfigError):
        calibrate(np.arange(10.0), **kw)


def test_threshold_is_the_conformal_order_statistic():
    v = np.random.default_rng(2).permutation(np.arange(1.0, 250.0))  # 249 validation scores 1..249
    t = calibrate(v, target_fpr=0.01)
    assert t.value == 248.0  # ceil(250 * 0.99) = 248th smallest: one validation score above it
    # a row is flagged exactly when its conformal p-value is at most the target
    probe = np.arange(0.5, 260.0, 1.0)
    np.testing.assert_array_equal(probe > t.value, t.p_values(probe) <= 0.01)
    assert calibrate(np.arange(1.0, 50.0), target_fpr=0.01).value == 49.0  # too few rows: the maximum


def test_conformal_threshold_holds_its_rate_on_small_validation_sets():
    """Over many small validation sets, fresh normal rows are flagged at most at the target rate
    on average (the empirical quantile flags more)."""
    rng = np.random.default_rng(3)
    rates = [(rng.standard_t(3, 20_000) > calibrate(rng.standard_t(3, 150), target_fpr=0.02).value).mean()
             for _ in range(300)]
    assert np.mean(rates) <= 0.02


def test_a_target_near_one_cuts_at_the_lowest_score():
    # (n + 1)(1 - target) below the rounding tolerance must not wrap round to the highest score
    assert calibrate(np.arange(1.0, 11.0), alert_rate=1 - 1e-12).value == 1.0
