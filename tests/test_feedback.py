"""fit --feedback: reviewed rows move both ways, the counts are printed and recorded, bad
decisions are refused by line."""

import hashlib
from pathlib import Path

import pytest

from fraudvae import FraudVAE
from fraudvae.cli import main


@pytest.fixture(scope="module")
def labelled(data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("feedback")
    data.head(1500).to_csv(d / "data.csv", index=False)
    return d


def test_feedback_moves_rows_both_ways_and_is_recorded(labelled: Path, data, capsys) -> None:
    rows = data.head(1500)
    frauds = rows.loc[rows["is_fraud"] == 1, "transaction_id"].tolist()[:4]
    normals = rows.loc[rows["is_fraud"] == 0, "transaction_id"].tolist()[:6]
    lines = [f"{i},legit" for i in frauds] + [f"{i},FRAUD" for i in normals] + ["nope-1,fraud", "nope-2,legit"]
    reviewed = labelled / "reviewed.csv"
    reviewed.write_text("id,decision\n" + "\n".join(lines) + "\n")
    assert main(["fit", str(labelled / "data.csv"), "--model", str(labelled / "m"), "--label-column", "is_fraud",
                 "--id-column", "transaction_id", "--epochs", "3", "--quiet", "--feedback", str(reviewed)]) == 0
    out = capsys.readouterr().out
    assert "6 rows moved to fraud" in out and "4 moved to normal" in out and "2 reviewed ids not in the data" in out
    det = FraudVAE.load(labelled / "m")
    fb = det.metrics_["feedback"]
    assert fb["sha256"] == hashlib.sha256(reviewed.read_bytes()).hexdigest()
    assert (fb["moved_to_fraud"], fb["moved_to_normal"], fb["unknown_ids"], fb["rows_reviewed"]) == (6, 4, 2, 10)
    expected_frauds = int(rows["is_fraud"].sum()) - 4 + 6
    assert det.metrics_["fraud_rows"] == expected_frauds  # kept out of training, counted as frauds
    assert det.metrics_["normal_rows"] == 1500 - expected_frauds


def test_feedback_without_a_label_column(labelled: Path, data, capsys) -> None:
    reviewed = labelled / "only_fraud.csv"
    ids = data.head(1500)["transaction_id"].tolist()[:5]
    reviewed.write_text("id,decision\n" + "".join(f"{i},fraud\n" for i in ids))
    df = data.head(1500).drop(columns="is_fraud")
    df.to_csv(labelled / "unlabelled.csv", index=False)
    assert main(["fit", str(labelled / "unlabelled.csv"), "--model", str(labelled / "u"), "--id-column",
                 "transaction_id", "--epochs", "3", "--quiet", "--feedback", str(reviewed)]) == 0
    assert FraudVAE.load(labelled / "u").metrics_["fraud_rows"] == 5
    assert "5 rows moved to fraud" in capsys.readouterr().out


@pytest.mark.parametrize("body, line", [("id,decision\nt1,fraud\nt2,legit\nt3,maybe\n", 4),
                                        ("id,decision\nt1,fraud\nt1,legit\n", 3)])
def test_a_bad_decision_is_refused_naming_its_line(labelled: Path, body: str, line: int, capsys) -> None:
    bad = labelled / "bad.csv"
    bad.write_text(body)
    assert main(["fit", str(labelled / "data.csv"), "--model", str(labelled / "g"), "--id-column", "transaction_id",
                 "--epochs", "1", "--quiet", "--feedback", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"line {line}" in err and "Traceback" not in err and not (labelled / "g").exists()


def test_feedback_needs_the_id_column(labelled: Path, capsys) -> None:
    (labelled / "r.csv").write_text("id,decision\nx,fraud\n")
    assert main(["fit", str(labelled / "data.csv"), "--model", str(labelled / "h"), "--epochs", "1", "--quiet",
                 "--label-column", "is_fraud", "--feedback", str(labelled / "r.csv")]) == 2
    assert "--id-column" in capsys.readouterr().err
