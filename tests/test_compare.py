"""`fraudvae compare`: two models on the same labelled rows, their metrics and the overlap of their alerts."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudvae import FraudVAE, example_transactions
from fraudvae.compare import FIGURES, compare, summary, write_compare_report
from fraudvae.errors import ConfigError, SchemaError


@pytest.fixture(scope="module")
def other(data: pd.DataFrame) -> FraudVAE:
    """A second model that reads fewer columns (risk_3 left out) and was trained differently."""
    return FraudVAE(label_column="is_fraud", id_column="transaction_id", drop=("risk_3",), epochs=15,
                    seed=3).fit(data)


@pytest.fixture(scope="module")
def test_rows() -> pd.DataFrame:
    return example_transactions(rows=2500, fraud_rate=0.04, seed=33)


def test_overlap_counts_equal_both_models_flags(fitted: FraudVAE, other: FraudVAE, test_rows: pd.DataFrame) -> None:
    c = compare([("a", fitted), ("b", other)], test_rows, "is_fraud")
    fa, fb = fitted.score(test_rows)["flag"].to_numpy(), other.score(test_rows)["flag"].to_numpy()
    fraud = test_rows["is_fraud"].to_numpy() == 1
    o = c.metrics["overlap"]
    assert o["both"] == {"alerts": int((fa & fb).sum()), "frauds": int((fa & fb & fraud).sum())}
    assert o["only_a"] == {"alerts": int((fa & ~fb).sum()), "frauds": int((fa & ~fb & fraud).sum())}
    assert o["only_b"] == {"alerts": int((~fa & fb).sum()), "frauds": int((~fa & fb & fraud).sum())}
    assert o["neither"]["rows"] + o["both"]["alerts"] + o["only_a"]["alerts"] + o["only_b"]["alerts"] == len(test_rows)
    assert o["both"]["alerts"] > 0 and (o["only_a"]["alerts"] + o["only_b"]["alerts"]) > 0  # the test means something
    a, b = c.metrics["models"]["A"], c.metrics["models"]["B"]
    assert "risk_3" in a["columns"] and "risk_3" not in b["columns"]  # each read the columns it needs
    assert a["version"] == fitted.version_ and b["version"] == other.version_
    assert a["at_threshold"]["flagged"] == fa.sum() and b["at_threshold"]["flagged"] == fb.sum()


def test_precision_at_the_budget_is_the_top_k_hand_count(fitted: FraudVAE, other: FraudVAE,
                                                         test_rows: pd.DataFrame) -> None:
    c = compare([("a", fitted), ("b", other)], test_rows, "is_fraud", alerts=40)
    for name, det in (("A", fitted), ("B", other)):
        s = det.score_samples(test_rows)
        top = np.argsort(-s, kind="stable")[:40]
        hand = test_rows["is_fraud"].to_numpy()[top].mean()
        assert c.metrics["models"][name]["precision_at_budget"] == pytest.approx(hand)
    assert c.metrics["budget"]["alerts"] == 40 and c.metrics["budget"]["per"] == "file"
    ev = c.evaluations[0]
    assert c.metrics["models"]["A"]["auc_roc"] == ev.metrics["auc_roc"]


def test_data_without_a_column_a_model_needs_is_refused_naming_model_and_column(
        fitted: FraudVAE, other: FraudVAE, test_rows: pd.DataFrame) -> None:
    # other does not read risk_3: dropping it is fine for B, but A needs it
    with pytest.raises(SchemaError, match=r"model A \(a\).*risk_3") as e:
        compare([("a", fitted), ("b", other)], test_rows.drop(columns="risk_3"), "is_fraud")
    assert e.value.column == "risk_3"
    with pytest.raises(ConfigError, match="two models"):
        compare([("a", fitted)], test_rows, "is_fraud")


def test_report_and_summary(fitted: FraudVAE, other: FraudVAE, test_rows: pd.DataFrame, tmp_path: Path) -> None:
    c = compare([("a", fitted), ("b", other)], test_rows, "is_fraud")
    path = write_compare_report(c, tmp_path / "cmp")
    assert {p.name for p in path.iterdir()} == {"compare.json", *FIGURES}
    assert json.loads((path / "compare.json").read_text()) == json.loads(json.dumps(c.metrics))
    text = summary(c)
    o = c.metrics["overlap"]
    assert f"both {o['both']['alerts']:,} ({o['both']['frauds']:,} fraud)" in text


def test_cli_compare(model_dir: Path, other: FraudVAE, test_rows: pd.DataFrame, tmp_path: Path) -> None:
    b = other.save(tmp_path / "b")
    test_rows.to_csv(tmp_path / "t.csv", index=False)
    cmd = [sys.executable, "-m", "fraudvae", "compare", str(tmp_path / "t.csv"), "--model", str(model_dir),
           "--label-column", "is_fraud", "--report", str(tmp_path / "r")]
    r = subprocess.run([*cmd, "--model", str(b)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "only A" in r.stdout and (tmp_path / "r" / "compare.json").is_file()
    one = subprocess.run([*cmd[:-2], "--report", str(tmp_path / "r1")], capture_output=True, text=True, timeout=120)
    assert one.returncode == 2 and "two models" in one.stderr and not (tmp_path / "r1").exists()


def test_a_budget_beyond_the_rows_is_warned_and_the_table_lines_up(fitted: FraudVAE, other: FraudVAE,
                                                                   test_rows: pd.DataFrame) -> None:
    c = compare([("a", fitted), ("b", other)], test_rows, "is_fraud", alerts=100_000)
    text = summary(c)
    assert "warning: the budget of 100,000 alerts is not below the file's 2,500 rows" in text
    table = [line for line in text.splitlines() if line.startswith(("AUC", "average", "precision", "alerts at its",
                                                                    "recall", "best"))]
    assert len({len(line) for line in table}) == 1  # every row of the table has the same width
    assert "warning" not in compare([("a", fitted), ("b", other)], test_rows, "is_fraud").metrics["budget"]
