"""What the commands write and what they never destroy; values read exactly as written (issue 29)."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudvae import FraudVAE, ModelFileError, example_transactions
from fraudvae.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with train.csv (ids with leading zeros), new.csv (no label), labelled.csv and a model m."""
    d = tmp_path_factory.mktemp("outputs")
    frame = example_transactions(rows=1500, fraud_rate=0.04, seed=3)
    frame["transaction_id"] = [f"{i:08d}" for i in range(len(frame))]
    frame.to_csv(d / "train.csv", index=False)
    frame.drop(columns="is_fraud").head(300).to_csv(d / "new.csv", index=False)
    frame.head(600).to_csv(d / "labelled.csv", index=False)
    assert main(["fit", str(d / "train.csv"), "--model", str(d / "m"), "--label-column", "is_fraud",
                 "--id-column", "transaction_id", "--epochs", "5", "--quiet"]) == 0
    return d


def _mine(folder: Path) -> dict[str, str]:
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "keep.csv").write_text("a,b\n1,2\n")
    return {"notes.txt": "my notes\n", "sub/keep.csv": "a,b\n1,2\n"}


def _untouched(folder: Path, files: dict[str, str]) -> bool:
    return all((folder / k).read_text() == v for k, v in files.items())


COMMANDS = {
    "evaluate": ["evaluate", "{d}/labelled.csv", "--model", "{d}/m", "--label-column", "is_fraud", "--report", "{out}"],
    "monitor": ["monitor", "{d}/new.csv", "--model", "{d}/m", "--report", "{out}", "--window-rows", "150"],
    "compare": ["compare", "{d}/labelled.csv", "--model", "{d}/m", "--model", "{d}/m", "--label-column", "is_fraud",
                "--report", "{out}"],
    "recalibrate": ["recalibrate", "--model", "{d}/m", "--data", "{d}/labelled.csv", "--label-column", "is_fraud",
                    "--output", "{out}"],
    "fit": ["fit", "{d}/train.csv", "--model", "{out}", "--label-column", "is_fraud", "--epochs", "2", "--quiet"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_output_folder_of_other_files_is_refused_and_its_own_output_rewritten(files, tmp_path, capsys, command):
    def run(out: Path) -> int:
        return main([a.format(d=files, out=out) for a in COMMANDS[command]])

    mine = tmp_path / "mine"
    kept = _mine(mine)
    assert run(mine) == 2
    err = capsys.readouterr().err
    assert str(mine) in err and "notes.txt" in err and "sub/" in err and _untouched(mine, kept)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "sub"]
    fresh = tmp_path / "fresh"
    assert run(fresh) in (0, 3) and run(fresh) in (0, 3)  # its own earlier output is replaced
    (tmp_path / "afile").write_text("keep\n")
    assert run(tmp_path / "afile") == 2 and (tmp_path / "afile").read_text() == "keep\n"
    assert "is a file" in capsys.readouterr().err


def test_a_report_on_the_model_or_the_inputs_folder_is_refused(files, tmp_path, capsys):
    victim = tmp_path / "victim"
    shutil.copytree(files / "m", victim)
    before = {p.name: p.read_bytes() for p in victim.iterdir()}
    assert main(["evaluate", str(files / "labelled.csv"), "--model", str(victim), "--label-column", "is_fraud",
                 "--report", str(victim)]) == 2
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before
    assert "which this command reads" in capsys.readouterr().err
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(files / "new.csv", work / "new.csv")
    assert main(["monitor", str(work / "new.csv"), "--model", str(files / "m"), "--report", str(work)]) == 2
    assert (work / "new.csv").read_bytes() == (files / "new.csv").read_bytes()


def test_outputs_inside_the_model_are_refused(files, tmp_path, capsys):
    victim = tmp_path / "victim"
    shutil.copytree(files / "m", victim)
    before = {p.name: p.read_bytes() for p in victim.iterdir()}
    assert main(["score", str(files / "new.csv"), "--model", str(victim), "--output", str(victim / "model.json")]) == 2
    assert main(["sample", "--model", str(victim), "-n", "5", "--output", str(victim / "rows.csv")]) == 2
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before
    assert "inside the model directory" in capsys.readouterr().err
    FraudVAE.load(victim)


def test_score_to_stdout_writes_nothing_when_a_later_row_is_bad(files, tmp_path, capsys):
    bad = pd.read_csv(files / "new.csv", dtype={"transaction_id": str})
    bad["amount"] = bad["amount"].astype(object)
    bad.loc[250, "amount"] = "twelve"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["score", str(tmp_path / "bad.csv"), "--model", str(files / "m"), "--output", "-",
                 "--chunk-rows", "50", "--quiet"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "twelve" in out.err and "line 252" in out.err
    assert main(["score", str(files / "new.csv"), "--model", str(files / "m"), "--output", "-", "--quiet",
                 "--chunk-rows", "50"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 301


def test_ids_with_leading_zeros_stay_text(files, tmp_path, capsys):
    out = tmp_path / "ids.csv"
    assert main(["score", str(files / "new.csv"), "--model", str(files / "m"), "--output", str(out), "--quiet"]) == 0
    assert pd.read_csv(out, dtype=str)["transaction_id"].head(3).tolist() == ["00000000", "00000001", "00000002"]
    pd.DataFrame({"id": [f"{i:08d}" for i in range(10)], "decision": "fraud"}).to_csv(tmp_path / "fb.csv", index=False)
    capsys.readouterr()
    assert main(["fit", str(files / "train.csv"), "--model", str(tmp_path / "fb"), "--label-column", "is_fraud",
                 "--id-column", "transaction_id", "--feedback", str(tmp_path / "fb.csv"), "--epochs", "2",
                 "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "on 10 rows" in said and "not in the data" not in said
    (tmp_path / "empty.csv").write_text("id,decision\n")
    assert main(["fit", str(files / "train.csv"), "--model", str(tmp_path / "fb2"), "--label-column", "is_fraud",
                 "--id-column", "transaction_id", "--feedback", str(tmp_path / "empty.csv"), "--epochs", "2",
                 "--quiet"]) == 0
    assert "holds no decisions" in capsys.readouterr().err


def test_a_repeated_column_name_is_refused(files, tmp_path, capsys):
    lines = (files / "new.csv").read_text().splitlines()
    (tmp_path / "dup.csv").write_text("\n".join([lines[0] + ",amount"] + [x + ",999999" for x in lines[1:]]) + "\n")
    assert main(["score", str(tmp_path / "dup.csv"), "--model", str(files / "m"), "--output",
                 str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "'amount' 2 times" in err and "columns 2, 13" in err and not (tmp_path / "o.csv").exists()
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table([pa.array([1.0, 2.0]), pa.array([3.0, 4.0])], names=["risk_1", "risk_1"]),
                   tmp_path / "dup.parquet")
    assert main(["fit", str(tmp_path / "dup.parquet"), "--model", str(tmp_path / "x"), "--quiet"]) == 2
    assert "'risk_1' 2 times (columns 1, 2" in capsys.readouterr().err


@pytest.mark.parametrize("unit, scale", [("seconds", 1), ("milliseconds", 1000)])
def test_epoch_times_are_calendar_days_in_evaluate_and_monitor(files, tmp_path, unit, scale):
    t = pd.read_csv(files / "labelled.csv", dtype={"transaction_id": str})
    t["ts"] = (1_706_745_600 + np.arange(len(t)) * 1440) * scale  # 600 rows over 10 days from 2024-02-01
    t.to_csv(tmp_path / "epoch.csv", index=False)
    assert main(["evaluate", str(tmp_path / "epoch.csv"), "--model", str(files / "m"), "--label-column", "is_fraud",
                 "--report", str(tmp_path / "ev"), "--time-column", "ts", "--alerts-per-day", "5"]) == 0
    days = [d["day"] for d in json.loads((tmp_path / "ev" / "metrics.json").read_text())["daily"]["per_day"]]
    assert days == [f"2024-02-{d:02d}" for d in range(1, 11)]
    assert main(["monitor", str(tmp_path / "epoch.csv"), "--model", str(files / "m"), "--report",
                 str(tmp_path / "mon"), "--window", "1d", "--time-column", "ts"]) in (0, 3)
    windows = json.loads((tmp_path / "mon" / "monitor.json").read_text())["windows"]
    assert [w["window"] for w in windows] == [f"2024-02-{d:02d} 00:00:00" for d in range(1, 11)]


def test_monitor_windows_start_at_the_first_rows_day_in_its_own_clock(files, tmp_path, capsys):
    t = pd.read_csv(files / "new.csv", dtype={"transaction_id": str})
    t["when"] = [f"2024-02-{1 + i % 20:02d}T{i % 24:02d}:30:00+05:00" for i in range(len(t))]
    t.to_csv(tmp_path / "t.csv", index=False)
    args = ["monitor", str(tmp_path / "t.csv"), "--model", str(files / "m"), "--time-column", "when"]
    assert main([*args, "--report", str(tmp_path / "y"), "--window", "365d"]) in (0, 3)
    windows = json.loads((tmp_path / "y" / "monitor.json").read_text())["windows"]
    assert [w["window"] for w in windows] == ["2024-02-01 00:00:00"]  # not 2023-12-19, not +00:00
    assert "in 1 window of" in capsys.readouterr().out
    for window, said in (("0d", "is zero"), ("-1d", "zero or negative"), ("banana", "not a time span")):
        assert main([*args, "--report", str(tmp_path / "z"), f"--window={window}"]) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("time span") <= 2 and not (tmp_path / "z").exists()


@pytest.mark.parametrize("value, said", [("not a time", "line 7"), ("", "no time at line 7")])
def test_a_bad_time_in_evaluate_names_its_line(files, tmp_path, capsys, value, said):
    t = pd.read_csv(files / "labelled.csv", dtype={"transaction_id": str})
    t["ts"] = [f"2024-02-{1 + i % 10:02d} 10:00:00" for i in range(len(t))]
    t.loc[5, "ts"] = value
    t.to_csv(tmp_path / "t.csv", index=False)
    assert main(["evaluate", str(tmp_path / "t.csv"), "--model", str(files / "m"), "--label-column", "is_fraud",
                 "--report", str(tmp_path / "r"), "--time-column", "ts"]) == 2
    err = capsys.readouterr().err
    assert said in err and "'ts'" in err and "nan" not in err.lower().split("line")[0]


def test_recalibrate_checks_a_forgotten_label_and_the_rows_a_target_needs(files, tmp_path, capsys):
    t = pd.read_csv(files / "labelled.csv", dtype={"transaction_id": str})
    t.to_csv(tmp_path / "recent.csv", index=False)
    assert main(["recalibrate", "--model", str(files / "m"), "--data", str(tmp_path / "recent.csv"),
                 "--output", str(tmp_path / "rc")]) == 2
    assert "'is_fraud' looks like a fraud label" in capsys.readouterr().err and not (tmp_path / "rc").exists()
    t[t.is_fraud == 0].head(10).to_csv(tmp_path / "tiny.csv", index=False)
    assert main(["recalibrate", "--model", str(files / "m"), "--data", str(tmp_path / "tiny.csv"),
                 "--label-column", "is_fraud", "--output", str(tmp_path / "rc")]) == 2
    assert "at least 99" in capsys.readouterr().err and not (tmp_path / "rc").exists()
    t[t.is_fraud == 0].head(10).to_csv(tmp_path / "tiny.csv", index=False)
    assert main(["recalibrate", "--model", str(files / "m"), "--data", str(tmp_path / "tiny.csv"),
                 "--label-column", "is_fraud", "--output", str(tmp_path / "rc"), "--target-fpr", "0.1"]) == 0


def test_an_unwritable_output_is_named_as_given(files, capsys):
    assert main(["score", str(files / "new.csv"), "--model", str(files / "m"), "--output", "/proc/x.csv"]) == 2
    err = capsys.readouterr().err
    assert "/proc/x.csv" in err and ".tmp" not in err


def test_a_model_missing_a_field_names_it_and_its_writer(files, tmp_path):
    import hashlib

    m = tmp_path / "m"
    shutil.copytree(files / "m", m)
    meta = json.loads((m / "model.json").read_text())
    del meta["baseline_contributions"]
    (m / "model.json").write_text(json.dumps(meta))
    manifest = json.loads((m / "manifest.json").read_text())
    manifest["files"]["model.json"] = hashlib.sha256((m / "model.json").read_bytes()).hexdigest()
    (m / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"no field 'baseline_contributions'.*written by fraudvae 0\.1\.0"):
        FraudVAE.load(m)


def test_sample_generates_a_modelled_time_column_and_writes_to_stdout(tmp_path, capsys):
    frame = example_transactions(rows=800, fraud_rate=0.0, seed=4).drop(columns="is_fraud")
    frame["when"] = pd.date_range("2024-03-01", periods=len(frame), freq="37min").strftime("%d/%m/%Y %H:%M")
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert main(["fit", str(tmp_path / "t.csv"), "--model", str(tmp_path / "m"), "--id-column", "transaction_id",
                 "--epochs", "3", "--quiet", "--time-column", "when"]) == 0
    capsys.readouterr()
    assert main(["sample", "--model", str(tmp_path / "m"), "-n", "40", "--output", "-"]) == 0
    out = capsys.readouterr()
    assert not Path("-").exists() and "wrote 40 synthetic rows" in out.err
    (tmp_path / "s.csv").write_text(out.out)
    rows = pd.read_csv(tmp_path / "s.csv")
    when = rows["when"].dropna()  # (a briefly trained model draws a gap now and then, as for any column)
    assert len(rows) == 40 and len(when) >= 30 and when.str.fullmatch(r"\d\d/01/2024 \d\d:00").all()
    assert main(["score", str(tmp_path / "s.csv"), "--model", str(tmp_path / "m"), "--output",
                 str(tmp_path / "scored.csv"), "--quiet"]) == 0


def test_the_shadow_drops_its_backlog_at_shutdown(fitted):
    from fraudvae import Scores
    from fraudvae_service.batching import Batch
    from fraudvae_service.shadow import PASS_ROWS, Shadow

    def scores(n: int) -> Scores:
        return Scores(np.zeros(n), np.zeros(n, bool), np.ones(n), np.empty((n, 0), object), np.zeros((n, 1)))

    passes: list[int] = []

    class Slow:  # a challenger that takes its time
        version_ = "slow"

        def encode_columns(self, columns: dict, n: int) -> int:
            return n

        def score_encoded(self, n: int) -> Scores:
            passes.append(n)
            time.sleep(0.3)
            return scores(n)

    shadow = Shadow(fitted, None, 1000)
    shadow.detector = Slow()  # type: ignore[assignment]
    for _ in range(20):
        shadow.submit(Batch({}, [None] * 1000, 1000), scores(1000))
    time.sleep(0.05)
    assert 0 < shadow.report()["rows_waiting"] <= 20_000
    shadow.close()
    report = shadow.report()
    assert all(p <= PASS_ROWS for p in passes) and len(passes) <= 2
    assert report["rows_waiting"] == 0 and report["rows_dropped_at_shutdown"] + sum(passes) == 20_000
