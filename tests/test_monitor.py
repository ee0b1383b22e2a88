"""Drift monitoring and recalibration: planted drift found (and its column named), its control left
alone, the threshold brought back by recalibrating on recent rows."""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from fraudvae import FraudVAE
from fraudvae.cli import main
from fraudvae.monitor import MonitorConfig, alert_rate_interval, expected_alerts, uniformity_test, window_stats
from fraudvae.threshold import calibrate


def normals(n: int, seed: int) -> pd.DataFrame:
    """Correlated numbers and a category: a joint structure for the VAE to learn."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    return pd.DataFrame({
        "txn": [f"t{seed}-{i}" for i in range(n)],
        "x1": z[:, 0] + 0.1 * rng.normal(size=n),
        "x2": z[:, 0] - z[:, 1] + 0.1 * rng.normal(size=n),
        "x3": z[:, 1] + 0.1 * rng.normal(size=n),
        "x4": rng.normal(size=n),
        "kind": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
    })


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("monitor")
    normals(4000, 1).to_csv(d / "train.csv", index=False)
    control = normals(6000, 2)
    drifted = control.copy()
    drifted.loc[3000:, "x4"] += 2.0  # one column's distribution moves halfway through the file
    control.to_csv(d / "control.csv", index=False)
    drifted.to_csv(d / "drifted.csv", index=False)
    drifted.iloc[3000:4500].to_csv(d / "recent.csv", index=False)
    drifted.iloc[4500:].to_csv(d / "later.csv", index=False)
    assert main(["fit", str(d / "train.csv"), "--model", str(d / "m"), "--id-column", "txn", "--epochs", "30",
                 "--quiet"]) == 0
    return d


def test_planted_drift_is_found_and_its_column_named_first(setup: Path, capsys) -> None:
    code = main(["monitor", str(setup / "drifted.csv"), "--model", str(setup / "m"), "--report",
                 str(setup / "r1"), "--window-rows", "1500"])
    assert code == 3
    report = json.loads((setup / "r1" / "monitor.json").read_text())
    assert report["status"] == "drift" and len(report["windows"]) == 4
    assert [w["status"] for w in report["windows"]][2:] == ["drift", "drift"]
    assert all(w["top_drifting_columns"][0]["column"] == "x4" for w in report["windows"][2:])
    assert all(w["alert_rate"] > w["alert_rate_interval"][0] > 0.01 for w in report["windows"][2:])
    assert {p.name for p in (setup / "r1").glob("*.png")} == {"alert_rate.png", "p_values.png", "column_drift.png"}
    assert "drift" in capsys.readouterr().out


def test_the_control_is_in_bounds(setup: Path) -> None:
    assert main(["monitor", str(setup / "control.csv"), "--model", str(setup / "m"), "--report",
                 str(setup / "r2"), "--window-rows", "1500"]) == 0
    report = json.loads((setup / "r2" / "monitor.json").read_text())
    assert report["status"] == "ok" and report["windows_in_drift"] == 0


def test_a_missing_column_is_bad_input_named(setup: Path, capsys) -> None:
    pd.read_csv(setup / "drifted.csv").drop(columns="x3").to_csv(setup / "bad.csv", index=False)
    assert main(["monitor", str(setup / "bad.csv"), "--model", str(setup / "m"), "--report", str(setup / "r3")]) == 2
    assert "x3" in capsys.readouterr().err and not (setup / "r3").exists()


def test_recalibration_restores_the_rate_and_records_its_lineage(setup: Path) -> None:
    old = FraudVAE.load(setup / "m")
    later = pd.read_csv(setup / "later.csv")
    assert (old.score_samples(later) > old.threshold_.value).mean() > 0.03  # drift broke the old threshold
    assert main(["recalibrate", "--model", str(setup / "m"), "--data", str(setup / "recent.csv"), "--output",
                 str(setup / "m2")]) == 0
    new = FraudVAE.load(setup / "m2")
    np.testing.assert_allclose(new.score_samples(later), old.score_samples(later))  # the same weights
    assert 0.003 <= (new.score_samples(later) > new.threshold_.value).mean() <= 0.025
    assert new.version_ != old.version_
    lineage = json.loads((setup / "m2" / "model.json").read_text())["lineage"]
    assert lineage["parent_version"] == old.version_ and len(lineage["recalibrated_on"]["sha256"]) == 64


def test_window_measures() -> None:
    lo, hi = alert_rate_interval(20, 2000, 0.001)
    assert lo < 0.01 < hi and alert_rate_interval(0, 100, 0.01)[0] == 0.0
    rng = np.random.default_rng(0)
    columns, baseline = ["a", "b"], np.zeros(2)
    contributions = np.c_[rng.normal(0, 1, 3000), rng.normal(0.5, 1, 3000)]
    p = rng.uniform(size=3000)
    ok = window_stats(p <= 0.01, p, contributions, columns, baseline, 0.01)
    assert ok["status"] == "ok" and ok["top_drifting_columns"][0]["column"] == "b"
    skewed = p ** 2  # too many small p-values: the scores moved up
    assert window_stats(skewed <= 0.01, skewed, contributions, columns, baseline, 0.01)["status"] == "drift"
    tiny = window_stats(np.ones(10, bool), p[:10], contributions[:10], columns, baseline, 0.01,
                        MonitorConfig(min_rows=100))
    assert tiny["status"] == "ok"  # too few rows to call anything
    fell = np.c_[rng.normal(-3, 1, 3000), contributions[:, 1]]  # a column that became much more usual moved too
    assert window_stats(p <= 0.01, p, fell, columns, baseline, 0.01)["top_drifting_columns"][0]["column"] == "a"
    empty = window_stats(np.zeros(0, bool), np.zeros(0), np.zeros((0, 2)), columns, baseline, 0.01)
    assert empty["status"] == "no data"


def test_the_service_watches_its_window(setup: Path) -> None:
    from fastapi.testclient import TestClient

    from fraudvae_service.app import create_app
    from fraudvae_service.settings import Settings

    drifted = json.loads(pd.read_csv(setup / "drifted.csv").iloc[3000:5000].to_json(orient="records"))
    control = json.loads(pd.read_csv(setup / "control.csv").iloc[3000:5000].to_json(orient="records"))
    for rows, status in ((control, "ok"), (drifted, "drift")):
        with TestClient(create_app(Settings(model=setup / "m", monitor_rows=1500))) as c:
            for i in range(0, len(rows), 250):
                assert c.post("/score", json={"transactions": rows[i: i + 250]}).status_code == 200
            report = c.get("/monitor").json()
            assert report["status"] == status and report["window"]["rows"] == 1500
            if status == "drift":
                assert report["top_drifting_columns"][0]["column"] == "x4"
                assert report["alert_rate_interval"][0] > report["target"]
            metrics = c.get("/metrics").text
            assert f"fraudvae_monitor_drift {float(status == 'drift')}" in metrics
            assert 'fraudvae_monitor_column_shift_nats{column="x4"}' in metrics


def test_a_shadow_challenger_scores_every_request_off_the_answer(setup: Path, tmp_path: Path, capsys) -> None:
    from fastapi.testclient import TestClient

    from fraudvae_service.app import create_app
    from fraudvae_service.settings import Settings

    assert main(["fit", str(setup / "train.csv"), "--model", str(tmp_path / "b"), "--id-column", "txn",
                 "--epochs", "10", "--seed", "7", "--quiet"]) == 0
    frame = pd.read_csv(setup / "control.csv").iloc[:600]
    rows = json.loads(frame.to_json(orient="records"))
    answers = {}
    for shadow in (None, tmp_path / "b"):
        settings = Settings(model=setup / "m", shadow_model=shadow, shadow_log=tmp_path / "shadow.jsonl")
        with TestClient(create_app(settings)) as c:
            answers[shadow] = [c.post("/score", json={"transactions": rows[i: i + 200]}).json()
                               for i in range(0, 600, 200)]
            if shadow is not None:  # the challenger scores after the answers: wait for it
                for _ in range(100):
                    report = c.get("/monitor").json()["shadow"]
                    if report["rows"] == 600:
                        break
                    time.sleep(0.05)
                metrics = c.get("/metrics").text
    assert answers[None] == answers[tmp_path / "b"]  # the champion's answers, untouched
    assert report["rows"] == 600 and -1 <= report["rank_correlation"] <= 1
    assert "fraudvae_shadow_rows_total 600.0" in metrics
    logged = [json.loads(line) for line in (tmp_path / "shadow.jsonl").read_text().splitlines()]
    expected = FraudVAE.load(tmp_path / "b").score(frame).set_index("txn")["score"]
    assert [x["id"] for x in logged] == frame["txn"].tolist()
    np.testing.assert_allclose([x["score"] for x in logged], expected.loc[[x["id"] for x in logged]], rtol=1e-9)
    a = FraudVAE.load(setup / "m").score(frame)["flag"].to_numpy()  # the figures, as scoring both offline gives
    b = FraudVAE.load(tmp_path / "b").score(frame)["flag"].to_numpy()
    assert (report["alerts_both"], report["alerts_only_champion"], report["alerts_only_challenger"]) == (
        int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()))
    assert report["challenger_alert_rate"] == pytest.approx(b.mean())

    narrow = tmp_path / "narrow.csv"
    pd.read_csv(setup / "train.csv").drop(columns="x3").to_csv(narrow, index=False)
    assert main(["fit", str(narrow), "--model", str(tmp_path / "c"), "--epochs", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["serve", "--model", str(setup / "m"), "--shadow", str(tmp_path / "c"), "--port", "1"]) == 2
    assert "x3" in capsys.readouterr().err


def test_the_uniformity_test_allows_for_the_calibration_rows_noise() -> None:
    """Windows exchangeable with 1,200 calibration rows: the two-sample p-value rejects at its level,
    the one-sample test (as if the calibration ECDF were exact) far more often."""
    rng = np.random.default_rng(0)
    one = two = 0
    for _ in range(300):
        calibration = np.sort(rng.normal(size=1200))
        window = rng.normal(size=1500)
        p = (1 + len(calibration) - np.searchsorted(calibration, window)) / (1 + len(calibration))
        one += uniformity_test(p)[1] < 0.01
        two += uniformity_test(p, len(calibration))[1] < 0.01
    assert two <= 6 and one >= 30  # 1% of 300 is 3
    shifted = (1 + 1200 - np.searchsorted(calibration, rng.normal(0.3, 1, 1500))) / 1201
    assert uniformity_test(shifted, 1200)[1] < 1e-6  # a real shift is still found


def test_the_alert_rate_test_allows_for_the_thresholds_own_noise() -> None:
    """The cut is an order statistic of 1,200 validation scores, so the share of normal rows above
    it varies around the target: windows of 10,000 exchangeable rows fall outside the Clopper-Pearson
    interval around the target far more often than its level, and inside the Beta-Binomial range."""
    rng = np.random.default_rng(0)
    config = MonitorConfig(alpha=0.01)
    naive = exact = 0

    def rate_off(stats: dict) -> bool:
        return any(reason.startswith("alert rate") for reason in stats["reasons"])

    for _ in range(300):
        t = calibrate(rng.normal(size=1200), target_fpr=0.01)
        flags = rng.normal(size=10_000) > t.value
        p, contributions = rng.uniform(size=10_000), np.zeros((10_000, 1))
        naive += rate_off(window_stats(flags, p, contributions, ["a"], np.zeros(1), 0.01, config))
        stats = window_stats(flags, p, contributions, ["a"], np.zeros(1), 0.01, config, calibration_rows=1200,
                             calibration_above=t.above)
        exact += rate_off(stats)
        assert stats["alert_rate_expected"][0] < 0.01 < stats["alert_rate_expected"][1]
    assert exact <= 9 and naive >= 60  # 1% of 300 is 3
    doubled = rng.normal(size=10_000) > np.quantile(rng.normal(size=100_000), 0.97)  # 3% of normal rows
    stats = window_stats(doubled, rng.uniform(size=10_000), np.zeros((10_000, 1)), ["a"], np.zeros(1), 0.01,
                         calibration_rows=1200, calibration_above=t.above)
    assert stats["status"] == "drift" and "outside the range" in stats["reasons"][0]


def test_the_expected_alert_range_is_the_beta_binomial_tails() -> None:
    law = scipy_stats.betabinom(1500, 12, 1189)
    counts = np.arange(1501)
    accepted = counts[(law.cdf(counts) >= 0.0005) & (law.sf(counts - 1) >= 0.0005)]
    assert expected_alerts(1500, 1200, 11, 0.001) == (accepted[0], accepted[-1])
    assert expected_alerts(50, 10, 0, 0.001)[0] == 0  # one validation row above nothing: no alerts is normal


def test_the_monitor_derives_the_count_above_the_cut_as_calibrate_does() -> None:
    rng = np.random.default_rng(1)
    flags, p, contributions = np.zeros(500, bool), rng.uniform(size=500), np.zeros((500, 1))
    for n, target in ((40, 0.01), (199, 0.01), (1200, 0.01), (300, 0.05), (5000, 0.001)):
        t = calibrate(rng.normal(size=n), target_fpr=target)
        derived = window_stats(flags, p, contributions, ["a"], np.zeros(1), target, calibration_rows=n)
        given = window_stats(flags, p, contributions, ["a"], np.zeros(1), target, calibration_rows=n,
                             calibration_above=t.above)
        assert derived["alert_rate_expected"] == given["alert_rate_expected"]
