import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fraudvae import example_transactions
from fraudvae.cli import main


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    example_transactions(rows=1500, fraud_rate=0.03, seed=1).to_csv(d / "train.csv", index=False)
    example_transactions(rows=400, fraud_rate=0.05, seed=2).drop(columns="is_fraud").to_csv(d / "new.csv", index=False)
    return d


@pytest.fixture(scope="module")
def cli_model(csvs):
    rc = main(["fit", str(csvs / "train.csv"), "--model", str(csvs / "model"), "--label-column", "is_fraud",
               "--id-column", "transaction_id", "--epochs", "15", "--quiet"])
    assert rc == 0
    return csvs / "model"


def test_fit_then_score(csvs, cli_model, capsys):
    out = csvs / "scored.csv"
    assert main(["score", str(csvs / "new.csv"), "--model", str(cli_model), "--output", str(out), "--quiet",
                 "--chunk-rows", "150"]) == 0
    scored = pd.read_csv(out)
    new = pd.read_csv(csvs / "new.csv")
    assert len(scored) == len(new)
    assert list(scored.columns) == ["transaction_id", "score", "flag", "p_value", "top_features"]
    assert (scored["transaction_id"] == new["transaction_id"]).all()
    assert set(scored["flag"]) <= {0, 1} and np.isfinite(scored["score"]).all()
    out = capsys.readouterr()
    assert "scored 400 rows" in out.err and out.out == ""  # the report on stderr, stdout clean


def test_fit_summary_names_roles(csvs, capsys):
    main(["fit", str(csvs / "train.csv"), "--model", str(csvs / "m2"), "--label-column", "is_fraud",
          "--epochs", "2", "--quiet"])
    text = capsys.readouterr().out
    assert "transaction_id: row id" in text and "precision" in text and "threshold:" in text


def _fails(args, capsys, written):
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("fraudvae: error: ") and err.count("\n") == 1
    assert not written.exists()
    return err


def test_missing_file(tmp_path, capsys):
    err = _fails(["fit", str(tmp_path / "nope.csv"), "--model", str(tmp_path / "m")], capsys, tmp_path / "m")
    assert "file not found" in err


def test_empty_file(tmp_path, capsys):
    (tmp_path / "e.csv").write_text("")
    assert "empty" in _fails(["fit", str(tmp_path / "e.csv"), "--model", str(tmp_path / "m")], capsys, tmp_path / "m")


def test_header_only_file(tmp_path, capsys):
    (tmp_path / "h.csv").write_text("a,b\n")
    assert "no data rows" in _fails(["fit", str(tmp_path / "h.csv"), "--model", str(tmp_path / "m")],
                                    capsys, tmp_path / "m")


def test_no_usable_column(tmp_path, capsys):
    pd.DataFrame({"id": range(100), "c": 1}).to_csv(tmp_path / "u.csv", index=False)
    err = _fails(["fit", str(tmp_path / "u.csv"), "--model", str(tmp_path / "m")], capsys, tmp_path / "m")
    assert "no usable column" in err and "constant" in err


def test_label_not_binary(csvs, tmp_path, capsys):
    df = pd.read_csv(csvs / "train.csv")
    df.loc[5, "is_fraud"] = 3
    df.to_csv(tmp_path / "l.csv", index=False)
    err = _fails(["fit", str(tmp_path / "l.csv"), "--model", str(tmp_path / "m"), "--label-column", "is_fraud"],
                 capsys, tmp_path / "m")
    assert "'is_fraud' is not binary: value 3 (line 7)" in err


def test_scoring_file_lacking_columns(csvs, cli_model, tmp_path, capsys):
    pd.read_csv(csvs / "new.csv").drop(columns=["amount", "country"]).to_csv(tmp_path / "n.csv", index=False)
    err = _fails(["score", str(tmp_path / "n.csv"), "--model", str(cli_model), "--output", str(tmp_path / "o.csv")],
                 capsys, tmp_path / "o.csv")
    assert "'amount'" in err and "'country'" in err


def test_bad_value_in_a_later_chunk_writes_nothing(csvs, cli_model, tmp_path, capsys):
    df = pd.read_csv(csvs / "new.csv")
    df["amount"] = df["amount"].astype(object)
    df.loc[300, "amount"] = "n/a?"
    df.to_csv(tmp_path / "n.csv", index=False)
    err = _fails(["score", str(tmp_path / "n.csv"), "--model", str(cli_model), "--output", str(tmp_path / "o.csv"),
                  "--chunk-rows", "100"], capsys, tmp_path / "o.csv")
    assert "line 302" in err and "'amount'" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "n.csv"]


def test_corrupted_model(csvs, cli_model, tmp_path, capsys):
    bad = tmp_path / "model"
    shutil.copytree(cli_model, bad)
    data = bytearray((bad / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "weights.safetensors").write_bytes(bytes(data))
    err = _fails(["score", str(csvs / "new.csv"), "--model", str(bad), "--output", str(tmp_path / "o.csv")],
                 capsys, tmp_path / "o.csv")
    assert "sha256" in err


def test_python_dash_m_and_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fraudvae", "fit", str(tmp_path / "nope.csv"), "--model",
                        str(tmp_path / "m")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "file not found" in r.stderr
    r = subprocess.run([sys.executable, "-m", "fraudvae", "example-data", str(tmp_path / "x.csv"), "--rows", "50"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and len(pd.read_csv(tmp_path / "x.csv")) == 50


def test_parquet_and_alert_rate(csvs, tmp_path, capsys):
    pd.read_csv(csvs / "train.csv").to_parquet(tmp_path / "train.parquet")
    pd.read_csv(csvs / "new.csv").to_parquet(tmp_path / "new.parquet")
    assert main(["fit", str(tmp_path / "train.parquet"), "--model", str(tmp_path / "m"), "--label-column",
                 "is_fraud", "--alert-rate", "0.05", "--epochs", "3", "--quiet"]) == 0
    assert "alert_rate 0.05" in capsys.readouterr().out
    assert main(["score", str(tmp_path / "new.parquet"), "--model", str(tmp_path / "m"), "--output",
                 str(tmp_path / "o.csv"), "--chunk-rows", "128", "--quiet"]) == 0
    assert len(pd.read_csv(tmp_path / "o.csv")) == 400


def test_point_mass_flag(tmp_path, capsys):
    rng = np.random.default_rng(4)
    pd.DataFrame({"refunds": np.where(rng.random(800) < 0.8, 0.0, rng.uniform(1, 50, 800).round(2)),
                  "amount": rng.lognormal(3, 1, 800).round(2)}).to_csv(tmp_path / "t.csv", index=False)
    assert main(["fit", str(tmp_path / "t.csv"), "--model", str(tmp_path / "m"), "--epochs", "2", "--quiet",
                 "--point-mass-share", "0.5"]) == 0
    from fraudvae import FraudVAE

    det = FraudVAE.load(tmp_path / "m")
    assert det.point_mass_share == 0.5 and det.preprocessor_.numeric["refunds"].point_mass == 0.0
    with pytest.raises(SystemExit) as e:  # argparse: out of range
        main(["fit", str(tmp_path / "t.csv"), "--model", str(tmp_path / "m2"), "--point-mass-share", "1.5"])
    assert e.value.code == 2 and not (tmp_path / "m2").exists()
    capsys.readouterr()
