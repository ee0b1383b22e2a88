"""Real transaction files through the command line: number formats, delimiters and encodings, a
forgotten label, output names and paths, extreme values, gaps, timestamps, file faults, file modes,
batch-independent scores and command-line manners. Every refusal: exit 2, one line naming the
column (and line), nothing written."""

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fraudvae import FraudVAE, example_transactions
from fraudvae.cli import main


def _frame(rows: int, seed: int) -> pd.DataFrame:
    return example_transactions(rows=rows, fraud_rate=0.0, seed=seed).drop(columns="is_fraud")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    _frame(1500, 1).to_csv(d / "train.csv", index=False)
    _frame(400, 2).to_csv(d / "new.csv", index=False)
    return d


@pytest.fixture(scope="module")
def model(files):
    assert main(["fit", str(files / "train.csv"), "--model", str(files / "m"), "--id-column", "transaction_id",
                 "--epochs", "10", "--quiet"]) == 0
    return files / "m"


def _refused(argv, capsys, *absent) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fraudvae: error: ") and "Traceback" not in err
    for path in absent:
        assert not path.exists()
    return err


def _scores(argv, out) -> np.ndarray:
    assert main([*argv, "--output", str(out), "--quiet"]) == 0
    return pd.read_csv(out)["score"].to_numpy()


# ---- 1: numbers written as text
def test_formatted_numbers_read_as_numbers(files, tmp_path):
    df = _frame(1000, 3)
    written = df.copy()
    rng = np.random.default_rng(0)
    forms = [lambda v: f"{v:,.2f}", lambda v: f"${v:,.2f}", lambda v: f"({-v:.4f})" if v < 0 else f"+{v:.4f}",
             lambda v: f"{-v:.4f}-" if v < 0 else f"{v:.4f}"]
    written["amount"] = [forms[k](v) for k, v in zip(rng.integers(0, 2, len(df)), df["amount"], strict=True)]
    written["risk_1"] = [forms[k](v) for k, v in zip(rng.integers(2, 4, len(df)), df["risk_1"], strict=True)]
    markers = ["", "NA", "N/A", "null", "NaN", "-", "?"]
    gaps = rng.random(len(df)) < 0.05
    written["risk_2"] = [markers[i % 7] if g else f"{v:.4f}" for i, (g, v) in enumerate(zip(gaps, df["risk_2"],
                                                                                          strict=True))]
    df.loc[gaps, "risk_2"] = np.nan
    written.to_csv(tmp_path / "w.csv", index=False)
    df.to_csv(tmp_path / "p.csv", index=False)
    a = FraudVAE(epochs=3, seed=0).fit(pd.read_csv(tmp_path / "w.csv"))
    assert {"amount", "risk_1", "risk_2"} <= set(a.schema_.names("numeric"))
    assert a.preprocessor_.numeric["risk_2"].indicator
    b = FraudVAE(epochs=3, seed=0).fit(pd.read_csv(tmp_path / "p.csv"))
    np.testing.assert_array_equal(a.score_samples(pd.read_csv(tmp_path / "w.csv")),
                                  b.score_samples(pd.read_csv(tmp_path / "p.csv")))


def test_a_few_typos_in_a_numeric_column_are_named_with_lines(files, tmp_path, capsys):
    df = pd.read_csv(files / "train.csv")
    df["amount"] = df["amount"].map("{:.2f}".format).astype(object)
    df.loc[[100, 700], "amount"] = ["abc", "12..5"]
    df.to_csv(tmp_path / "t.csv", index=False)
    err = _refused(["fit", str(tmp_path / "t.csv"), "--model", str(tmp_path / "m")], capsys, tmp_path / "m")
    assert "'amount'" in err and "'abc' (line 102)" in err and "'12..5' (line 702)" in err
    assert "--drop amount" in err and "--categorical amount" in err


def test_score_reads_values_as_fit_does_and_names_the_line(files, model, tmp_path, capsys):
    df = pd.read_csv(files / "new.csv")
    df["amount"] = df["amount"].map("${:,.2f}".format)
    df.to_csv(tmp_path / "d.csv", index=False)
    np.testing.assert_array_equal(_scores(["score", str(tmp_path / "d.csv"), "--model", str(model)], tmp_path / "a"),
                                  _scores(["score", str(files / "new.csv"), "--model", str(model)], tmp_path / "b"))
    df.loc[250, "amount"] = "lots"
    df.to_csv(tmp_path / "bad.csv", index=False)
    err = _refused(["score", str(tmp_path / "bad.csv"), "--model", str(model), "--output", str(tmp_path / "o.csv"),
                    "--chunk-rows", "100"], capsys, tmp_path / "o.csv")
    assert "'amount'" in err and "'lots' (line 252)" in err


# ---- 2: delimiters and encodings
@pytest.mark.parametrize(("sep", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_delimiters_are_detected_and_said(files, model, tmp_path, capsys, sep, name):
    pd.read_csv(files / "new.csv").to_csv(tmp_path / "d.csv", index=False, sep=sep)
    got = _scores(["score", str(tmp_path / "d.csv"), "--model", str(model)], tmp_path / "a.csv")
    assert name in capsys.readouterr().err
    np.testing.assert_array_equal(got, _scores(["score", str(files / "new.csv"), "--model", str(model)],
                                               tmp_path / "b.csv"))
    np.testing.assert_array_equal(got, _scores(["score", str(tmp_path / "d.csv"), "--model", str(model), "--sep",
                                                "\\t" if sep == "\t" else sep], tmp_path / "c.csv"))


def test_fit_says_the_delimiter(files, tmp_path, capsys):
    pd.read_csv(files / "train.csv").head(300).to_csv(tmp_path / "d.csv", index=False, sep=";")
    assert main(["fit", str(tmp_path / "d.csv"), "--model", str(tmp_path / "m"), "--epochs", "1", "--quiet"]) == 0
    assert "delimiter ';' (semicolon, detected)" in capsys.readouterr().out


def test_byte_order_mark_and_windows_1252(files, model, tmp_path, capsys):
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (files / "new.csv").read_bytes())
    np.testing.assert_array_equal(_scores(["score", str(tmp_path / "bom.csv"), "--model", str(model)], tmp_path / "a"),
                                  _scores(["score", str(files / "new.csv"), "--model", str(model)], tmp_path / "b"))
    df = pd.read_csv(files / "train.csv").head(300)
    df["city"] = np.where(np.arange(300) % 2, "München", "Zürich")
    df.to_csv(tmp_path / "latin.csv", index=False, encoding="cp1252")
    err = _refused(["fit", str(tmp_path / "latin.csv"), "--model", str(tmp_path / "m")], capsys, tmp_path / "m")
    assert "latin.csv" in err and "--encoding cp1252" in err
    assert main(["fit", str(tmp_path / "latin.csv"), "--model", str(tmp_path / "m"), "--encoding", "cp1252",
                 "--epochs", "1", "--quiet"]) == 0
    assert FraudVAE.load(tmp_path / "m").preprocessor_.categorical["city"].vocabulary == ("Zürich", "München")


# ---- 3: a forgotten label
@pytest.mark.parametrize("name", ["is_fraud", "Class", "isFraud", "FraudFound_P"])
def test_a_label_like_column_needs_a_decision(tmp_path, capsys, name):
    df = example_transactions(rows=400, fraud_rate=0.05, seed=4).rename(columns={"is_fraud": name})
    df.to_csv(tmp_path / "l.csv", index=False)
    err = _refused(["fit", str(tmp_path / "l.csv"), "--model", str(tmp_path / "m")], capsys, tmp_path / "m")
    assert repr(name) in err and f"--label-column {name}" in err and "--no-label-check" in err
    assert main(["fit", str(tmp_path / "l.csv"), "--model", str(tmp_path / "m"), "--no-label-check", "--epochs", "1",
                 "--quiet"]) == 0
    assert name in FraudVAE.load(tmp_path / "m").schema_.names()


# ---- 4: output names and paths
@pytest.mark.parametrize(("column", "option"), [("flag", "--id-column"), ("score", None), ("p_value", None)])
def test_columns_named_like_the_output_are_refused(files, tmp_path, capsys, column, option):
    df = pd.read_csv(files / "train.csv").head(300)
    df[column] = [f"T{i:05d}" for i in range(300)] if option else np.arange(300) % 7
    df.to_csv(tmp_path / "c.csv", index=False)
    argv = ["fit", str(tmp_path / "c.csv"), "--model", str(tmp_path / "m")] + ([option, column] if option else [])
    err = _refused(argv, capsys, tmp_path / "m")
    assert repr(column) in err and "rename" in err
    if not option:
        assert f"--drop {column}" in err


def test_output_paths_are_checked_before_scoring(files, model, tmp_path, capsys):
    data = tmp_path / "same.csv"
    data.write_bytes((files / "new.csv").read_bytes())
    before = data.read_bytes()
    os.chdir(tmp_path)
    err = _refused(["score", str(data), "--model", str(model), "--output", "./same.csv"], capsys)
    assert "is the input file" in err and data.read_bytes() == before
    err = _refused(["score", str(data), "--model", str(model), "--output", str(tmp_path)], capsys)
    assert repr(str(tmp_path)) in err and "directory" in err
    (tmp_path / "afile").write_text("x")
    err = _refused(["score", str(data), "--model", "no-such-model", "--output", "afile/o.csv"], capsys)
    assert "'afile/o.csv'" in err  # the path as given, and before the model is even read


# ---- 5: extreme and signed values
def test_values_too_large_to_scale_are_refused_naming_the_column(files, tmp_path, capsys):
    df = pd.read_csv(files / "train.csv").head(400)
    df.loc[17, "risk_1"] = 1e300
    df.to_csv(tmp_path / "e.csv", index=False)
    err = _refused(["fit", str(tmp_path / "e.csv"), "--model", str(tmp_path / "m")], capsys, tmp_path / "m")
    assert "'risk_1'" in err and "1e+300" in err and "line 19" in err


def test_a_refund_scores_by_how_unusual_it_is(fitted, data):
    assert fitted.preprocessor_.numeric["amount"].log
    rows = data[data["is_fraud"] == 0].head(20)
    neg, zero = fitted.score_samples(rows.assign(amount=-500.0)), fitted.score_samples(rows.assign(amount=0.0))
    assert (neg > zero + 1.0).all()


def test_two_valued_extremes_are_levels_not_gaps(tmp_path):
    df = _frame(600, 5)
    df["ext"] = np.where(np.arange(600) % 3 == 0, 1e308, -1e308)
    det = FraudVAE(epochs=2, seed=0).fit(df)
    assert det.schema_.names("binary")[-1] == "ext"
    rows = df.head(20)
    top, bottom, gap = (det.explain(rows.assign(ext=v))["ext"].to_numpy() for v in (1e308, -1e308, np.nan))
    assert np.isfinite(top).all() and np.isfinite(bottom).all() and np.isnan(gap).all()
    assert not np.allclose(top, bottom)


# ---- 6: gaps are not evidence
def test_a_gap_the_model_never_saw_contributes_nothing(fitted, data):
    rows = data[data["is_fraud"] == 0].head(50).reset_index(drop=True)
    for col in ("card_present", "merchant_category", "amount"):
        assert not data[col].isna().any()
        gap = rows.copy()
        gap[col] = None
        terms = fitted.explain(gap)
        assert terms[col].isna().all()  # the explanation says: missing, nothing counted
        s_gap, s_val = fitted.score_samples(gap), fitted.score_samples(rows)
        np.testing.assert_allclose(terms.sum(axis=1), s_gap, rtol=1e-9)
        assert np.median(s_gap) < np.median(s_val) + 1.0
        assert not fitted.score(gap)["top_features"].str.contains(col).any()
    # a column whose gaps training saw: the gap is evidence through its indicator
    assert fitted.preprocessor_.numeric["device_trust"].indicator
    assert np.isfinite(fitted.explain(rows.assign(device_trust=np.nan))["device_trust"]).all()


# ---- 7: timestamps
def _stamps(rng, n, lo, hi, start, days):
    t = pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, days, n), unit="D") \
        + pd.to_timedelta(rng.uniform(lo * 3600, hi * 3600, n).round(), unit="s")
    return pd.Series(t).sort_values().reset_index(drop=True)


def test_timestamps_become_hour_and_weekday(tmp_path, capsys):
    rng = np.random.default_rng(7)
    df = _frame(2000, 7).drop(columns="hour")
    df.insert(0, "timestamp", _stamps(rng, 2000, 8, 22, "2024-03-04", 28).dt.strftime("%Y-%m-%dT%H:%M:%S"))
    df.to_csv(tmp_path / "t.csv", index=False)
    assert main(["fit", str(tmp_path / "t.csv"), "--model", str(tmp_path / "m"), "--epochs", "8", "--quiet",
                 "--id-column", "transaction_id"]) == 0
    out = capsys.readouterr().out
    assert "timestamp (as hour of day and day of week)" in out
    det = FraudVAE.load(tmp_path / "m")
    assert det.schema_.names("time") == ["timestamp"]
    test = _frame(330, 8).drop(columns="hour")
    t = pd.concat([_stamps(rng, 300, 8, 22, "2024-04-01", 14), _stamps(rng, 30, 3, 4, "2024-04-01", 14)])
    test.insert(0, "timestamp", t.dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy())
    y = np.r_[np.zeros(300), np.ones(30)]
    assert roc_auc_score(y, det.score_samples(test)) > 0.9
    # the same instants as JSON-like columns (the service's path) score the same
    cols = {c: test[c].astype(object).where(test[c].notna(), None).tolist() for c in test.columns}
    enc = det.encode_columns(cols, len(test))
    np.testing.assert_allclose(det.score_encoded(enc).score, det.score_samples(test), rtol=1e-12)
    test.loc[5, "timestamp"] = "not a time"
    test.to_csv(tmp_path / "bad.csv", index=False)
    err = _refused(["score", str(tmp_path / "bad.csv"), "--model", str(tmp_path / "m"), "--output",
                    str(tmp_path / "o.csv")], capsys, tmp_path / "o.csv")
    assert "'timestamp'" in err and "'not a time' (line 7)" in err
    cols["timestamp"][3] = 17
    with pytest.raises(Exception, match=r"record 3, column 'timestamp'"):
        det.encode_columns(cols, len(test))


@pytest.mark.parametrize(("column", "write"), [
    ("time", lambda t: (t - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)),
    ("trans_date", lambda t: t.map(lambda x: f"{x.month}/{x.day}/{x.year} {x.hour}:{x.minute:02d}")),
])
def test_epoch_seconds_and_us_dates(column, write):
    rng = np.random.default_rng(9)
    df = _frame(600, 9)
    df.insert(0, column, write(_stamps(rng, 600, 8, 22, "2020-08-03", 28)))
    det = FraudVAE(epochs=2, seed=0).fit(df)
    assert column in det.schema_.names("time")


# ---- 8: files and faults
def test_nested_parquet_columns_are_named(files, tmp_path, capsys):
    df = pd.read_csv(files / "train.csv").head(300)
    df["tags"] = [["a", "b"][: 1 + i % 2] for i in range(300)]
    df.to_parquet(tmp_path / "n.parquet", index=False)
    err = _refused(["fit", str(tmp_path / "n.parquet"), "--model", str(tmp_path / "m")], capsys, tmp_path / "m")
    assert "'tags'" in err and "list" in err and "--drop tags" in err
    assert main(["fit", str(tmp_path / "n.parquet"), "--model", str(tmp_path / "m"), "--drop", "tags", "--epochs", "1",
                 "--quiet"]) == 0


def test_disk_full_is_one_line_and_leaves_nothing(files, model, tmp_path, capsys, monkeypatch):
    import pandas.core.generic as generic

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "o.csv"))

    monkeypatch.setattr(generic.NDFrame, "to_csv", full)
    err = _refused(["score", str(files / "new.csv"), "--model", str(model), "--output", str(tmp_path / "o.csv")],
                   capsys, tmp_path / "o.csv")
    assert "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_sigterm_leaves_no_partial_file_and_leftovers_are_cleaned(files, model, tmp_path):
    big = tmp_path / "in" / "big.csv"
    big.parent.mkdir()
    pd.concat([pd.read_csv(files / "new.csv")] * 300).to_csv(big, index=False)  # 120,000 rows
    out = tmp_path / "out" / "scores.csv"
    out.parent.mkdir()
    stale = out.parent / ".scores.csv.tmp999999999.abc"  # what a SIGKILLed run (pid long gone) left
    stale.write_text("partial")
    p = subprocess.Popen([sys.executable, "-m", "fraudvae", "score", str(big), "--model", str(model), "--output",
                          str(out), "--quiet", "--chunk-rows", "5000"], stderr=subprocess.PIPE, text=True)
    end = time.time() + 60
    while time.time() < end and not [f for f in out.parent.iterdir() if f != stale and f.name != out.name]:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode in (0, 143) and "Traceback" not in err
    assert sorted(f.name for f in out.parent.iterdir()) in ([], [out.name])


# ---- 9: file modes
def test_model_and_report_files_are_readable_by_others(model):
    assert {oct(p.stat().st_mode & 0o777) for p in model.iterdir()} == {oct(0o666 & ~_umask())}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- 10: one row, one score
def test_a_row_scores_the_same_in_any_batch(files, model, tmp_path):
    new = pd.read_csv(files / "new.csv")
    whole = _scores(["score", str(files / "new.csv"), "--model", str(model)], tmp_path / "w.csv")
    chunks = _scores(["score", str(files / "new.csv"), "--model", str(model), "--chunk-rows", "7"], tmp_path / "c.csv")
    np.testing.assert_allclose(chunks, whole, rtol=1e-9, atol=0)
    det = FraudVAE.load(model)
    alone = np.array([det.score_samples(new.iloc[[i]])[0] for i in (0, 5, 399)])
    for size in (1, 3, 64, 400):
        inside = np.concatenate([det.score_samples(new.iloc[i:i + size]) for i in range(0, 400, size)])
        np.testing.assert_allclose(inside[[0, 5, 399]], alone, rtol=1e-9, atol=0)
    np.testing.assert_allclose(whole, det.score_samples(new), rtol=1e-9, atol=0)


# ---- 11: command-line manners
def test_version_and_help_without_torch(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "fraudvae 0." in capsys.readouterr().out
    code = "import sys, fraudvae.cli as c; c.build_parser().format_help(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_fit_help_shows_defaults_and_exclusive_threshold_options(files, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "false-positive rate on validation normals (default: 0.01)" in text
    with pytest.raises(SystemExit) as e:
        main(["fit", str(files / "train.csv"), "--model", str(tmp_path / "m"), "--target-fpr", "0.05",
              "--alert-rate", "0.02"])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_closed_pipe_and_stdout_output(files, model):
    read, write = os.pipe()
    os.close(read)
    p = subprocess.run([sys.executable, "-m", "fraudvae", "score", str(files / "new.csv"), "--model", str(model),
                        "--output", "-", "--quiet"], stdout=write, stderr=subprocess.PIPE, text=True)
    os.close(write)
    assert "Broken pipe" not in p.stderr and "Traceback" not in p.stderr and "Exception ignored" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "fraudvae", "score", str(files / "new.csv"), "--model", str(model),
                        "--output", "-", "--quiet"], capture_output=True, text=True)
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and lines[0] == "transaction_id,score,flag,p_value,top_features" and len(lines) == 401
    score = lines[1].split(",")[1]
    assert 6 <= len(score.replace(".", "").lstrip("-0")) <= 10  # %.10g, not 17 digits


# ---- 13: no numeric column
def test_a_file_without_numbers_fits_and_scores(tmp_path):
    rng = np.random.default_rng(13)
    df = pd.DataFrame({"merchant": rng.choice(list("abcd"), 600), "channel": rng.choice(["pos", "web"], 600),
                       "card_present": rng.random(600) < 0.6})
    det = FraudVAE(epochs=3, seed=0).fit(df)
    assert det.preprocessor_.n_numeric == 0
    assert np.isfinite(det.score_samples(df)).all()
    det.save(tmp_path / "m")
    np.testing.assert_array_equal(FraudVAE.load(tmp_path / "m").score_samples(df), det.score_samples(df))
