"""`fraudvae evaluate` and `fraudvae.report`: the metrics, the report directory, bad input."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudvae import DataError, FraudVAE, example_transactions
from fraudvae.cli import main
from fraudvae.errors import ConfigError
from fraudvae.metrics import recall_at_fpr
from fraudvae.report import FIGURES, evaluate, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[pd.DataFrame, object]:
    df = example_transactions(rows=1500, fraud_rate=0.05, seed=8)
    path = tmp_path_factory.mktemp("evaluate") / "test.csv"
    df.to_csv(path, index=False)
    return df, path


def test_evaluate_writes_metrics_and_plots(model_dir, labelled, tmp_path, capsys):
    df, path = labelled
    report = tmp_path / "report"
    assert main(["evaluate", str(path), "--model", str(model_dir), "--label-column", "is_fraud",
                 "--report", str(report), "--chunk-rows", "400"]) == 0
    assert sorted(p.name for p in report.iterdir()) == sorted(["metrics.json", *FIGURES])
    for name in FIGURES:
        png = (report / name).read_bytes()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000, name  # a drawn figure, not an empty canvas
    m = json.loads((report / "metrics.json").read_text())
    frauds = int(df["is_fraud"].sum())
    assert m["data"] == {"source": str(path), "label_column": "is_fraud", "rows": len(df), "frauds": frauds,
                         "normals": len(df) - frauds, "fraud_rate": frauds / len(df)}
    assert m["model"]["version"] == FraudVAE.load(model_dir).version_
    assert 0.8 < m["auc_roc"] <= 1 and m["no_skill_average_precision"] < m["average_precision"] <= 1
    at, cm = m["at_threshold"], m["at_threshold"]["confusion_matrix"]
    assert sum(cm.values()) == len(df) and cm["tp"] + cm["fn"] == frauds
    assert at["fpr"] == pytest.approx(cm["fp"] / (cm["fp"] + cm["tn"]))
    assert at["recall"] == pytest.approx(cm["tp"] / frauds) and at["flagged"] == cm["tp"] + cm["fp"]
    assert set(m["recall_at_fpr"]) == {"0.001", "0.005", "0.01"}
    assert m["recall_at_fpr"]["0.001"]["recall"] <= m["recall_at_fpr"]["0.01"]["recall"]
    out = capsys.readouterr().out
    assert "AUC-ROC" in out and "actual fraud" in out and str(report) in out


def test_evaluate_agrees_with_the_scores(fitted, data):
    ev = evaluate(fitted, data, "is_fraud")
    scores = fitted.score(data)["score"].to_numpy()
    y = data["is_fraud"].to_numpy()
    np.testing.assert_allclose(ev.scores, scores)
    assert ev.metrics["auc_roc"] == pytest.approx(roc_auc_score(y, scores))
    assert ev.metrics["average_precision"] == pytest.approx(average_precision_score(y, scores))
    assert ev.metrics["at_threshold"]["flagged"] == int((scores > fitted.threshold_.value).sum())


def test_recall_at_fpr_by_brute_force():
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.1).astype(int)
    s = rng.normal(size=3000) + 1.5 * y
    for target in (0.001, 0.01, 0.1):
        got = recall_at_fpr(s, y, target)
        best = max(((s[y == 1] >= t).mean() for t in np.unique(s) if (s[y == 0] >= t).mean() <= target), default=0)
        assert got["recall"] == pytest.approx(best)
        flag = s >= got["threshold"]
        assert flag[y == 0].mean() <= target and flag[y == 1].mean() == pytest.approx(best)


def test_report_replaces_an_old_one_whole(fitted, data, tmp_path):
    report = tmp_path / "r"
    write_report(evaluate(fitted, data, "is_fraud"), report)
    (report / "metrics.json").write_text("{}")
    (report / "alerts_per_day.png").write_text("an earlier report's figure")
    write_report(evaluate(fitted, data, "is_fraud"), report)
    assert json.loads((report / "metrics.json").read_text())["auc_roc"] > 0.5
    assert not (report / "alerts_per_day.png").exists()  # replaced whole: not a figure of this report


def test_report_into_a_folder_of_other_files_is_refused(fitted, data, tmp_path):
    report = tmp_path / "r"
    (report / "sub").mkdir(parents=True)
    (report / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"notes.txt, sub/"):
        write_report(evaluate(fitted, data, "is_fraud"), report)
    assert sorted(p.name for p in report.iterdir()) == ["notes.txt", "sub"]


@pytest.mark.parametrize("case, message", [
    ("no label column", "label column 'is_fraud' is not a column"),
    ("label not binary", "is not binary: value 2 (line"),
    ("no fraud rows", "has no fraud rows"),
    ("no normal rows", "has no normal rows"),
    ("missing feature", "missing column(s) the model needs: 'amount'"),
])
def test_bad_input_one_line_exit_2_nothing_written(model_dir, labelled, tmp_path, capsys, case, message):
    df, _ = labelled
    bad = {"no label column": lambda d: d.drop(columns="is_fraud"),
           "label not binary": lambda d: d.assign(is_fraud=d["is_fraud"] * 2),
           "no fraud rows": lambda d: d[d["is_fraud"] == 0],
           "no normal rows": lambda d: d[d["is_fraud"] == 1],
           "missing feature": lambda d: d.drop(columns="amount")}[case](df)
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    report = tmp_path / "report"
    assert main(["evaluate", str(path), "--model", str(model_dir), "--label-column", "is_fraud",
                 "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not report.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_evaluate_refuses_a_frame_without_both_classes(fitted, data):
    with pytest.raises(DataError, match="no fraud rows"):
        evaluate(fitted, data[data["is_fraud"] == 0], "is_fraud")


def test_precision_at_the_daily_budget_matches_a_hand_count(fitted, tmp_path):
    df = example_transactions(rows=4000, fraud_rate=0.03, seed=21)
    days = np.repeat(pd.date_range("2026-03-01", periods=8, freq="D"), 500)
    df["ts"] = (days + pd.to_timedelta(np.tile(np.arange(500) * 60, 8), unit="s")).strftime("%Y-%m-%d %H:%M:%S")
    ev = evaluate(fitted, df, "is_fraud", time_column="ts", alerts_per_day=25)
    daily = ev.metrics["daily"]
    scores = fitted.score_samples(df)
    hand = (pd.DataFrame({"day": df["ts"].str[:10], "y": df["is_fraud"], "s": scores})
            .sort_values("s", ascending=False, kind="stable").groupby("day").head(25)
            .groupby("day")["y"].sum() / 25)
    assert daily["days"] == 8 and daily["mean_precision_at_k"] == pytest.approx(hand.mean())
    assert [r["precision_at_k"] for r in daily["per_day"]] == pytest.approx(hand.tolist())
    flagged = scores > fitted.threshold_.value
    assert sum(r["alerts_at_threshold"] for r in daily["per_day"]) == flagged.sum()
    assert sum(r["frauds_caught_at_threshold"] for r in daily["per_day"]) == (flagged & (df["is_fraud"] == 1)).sum()
    natural = ev.metrics["at_natural_fraud_rate"]
    assert natural["fraud_rate"] == pytest.approx(df["is_fraud"].mean())
    assert natural["average_precision"] == ev.metrics["average_precision"]
    path = write_report(ev, tmp_path / "r")
    assert (path / "alerts_per_day.png").is_file() and set(FIGURES) <= {p.name for p in path.glob("*.png")}


def test_alerts_per_day_needs_a_time_column(fitted, data):
    with pytest.raises(DataError, match="--time-column"):
        evaluate(fitted, data, "is_fraud", alerts_per_day=10)


def test_metrics_at_a_natural_fraud_rate_reweight_the_normals(fitted, data):
    own = evaluate(fitted, data, "is_fraud", natural_fraud_rate=float(data["is_fraud"].mean()))
    n = own.metrics["at_natural_fraud_rate"]
    assert n["reweighted"] and n["average_precision"] == pytest.approx(own.metrics["average_precision"])
    assert n["precision_at_threshold"] == pytest.approx(own.metrics["at_threshold"]["precision"])
    low = evaluate(fitted, data, "is_fraud", natural_fraud_rate=0.005)
    c = low.metrics["at_threshold"]["confusion_matrix"]
    frauds, normals = data["is_fraud"].sum(), (data["is_fraud"] == 0).sum()
    w = frauds * (1 - 0.005) / (0.005 * normals)  # each normal row stands for w rows of such traffic
    natural = low.metrics["at_natural_fraud_rate"]
    assert natural["precision_at_threshold"] == pytest.approx(c["tp"] / (c["tp"] + w * c["fp"]))
    assert low.metrics["at_natural_fraud_rate"]["average_precision"] < low.metrics["as_given"]["average_precision"]
    with pytest.raises(ConfigError):
        evaluate(fitted, data, "is_fraud", natural_fraud_rate=1.5)
