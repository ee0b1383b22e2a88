import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fraudvae import ConfigError, DataError, FraudVAE, ModelFileError, NotFittedError, SchemaError, example_transactions


def test_planted_frauds_are_found(fitted):
    test = example_transactions(rows=2000, fraud_rate=0.05, seed=99)
    out = fitted.score(test)
    assert roc_auc_score(test["is_fraud"], out["score"]) > 0.9
    normal_flag_rate = out["flag"][test["is_fraud"] == 0].mean()
    assert 0.0 < normal_flag_rate < 0.04


def test_frauds_are_kept_out_of_training(fitted, data):
    m = fitted.metrics_
    assert m["fraud_rows"] == int(data["is_fraud"].sum())
    assert m["train_rows"] + m["validation_rows"] == m["normal_rows"] == len(data) - m["fraud_rows"]
    assert {"precision", "recall", "f1"} <= set(m["at_threshold"])


def test_score_contract(fitted, data):
    out = fitted.score(data.head(50))
    assert list(out.columns) == ["transaction_id", "score", "flag", "p_value", "top_features"]
    assert (out["flag"] == (out["score"] > fitted.threshold_.value)).all()
    assert np.isfinite(out["score"]).all() and out["p_value"].between(0, 1).all()
    tops = out["top_features"].str.split(";")
    assert all(len(t) == 3 and set(t) <= set(fitted.schema_.names()) for t in tops)


def test_scores_are_deterministic_and_order_free(fitted, data):
    a = fitted.score_samples(data.head(300))
    b = fitted.score_samples(data.head(300).iloc[::-1])[::-1]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_array_equal(a, fitted.score_samples(data.head(300)))


def test_explain_sums_to_the_score(fitted, data):
    ex = fitted.explain(data.head(20))
    np.testing.assert_allclose(ex.sum(axis=1), fitted.score_samples(data.head(20)), rtol=1e-9)


def test_messy_rows_score_finitely(fitted, data):
    messy = data.head(4).copy()
    messy.loc[0, "amount"] = np.nan
    messy.loc[1, "merchant_category"] = "casino"
    messy["card_present"] = messy["card_present"].astype(object)
    messy.loc[2, "card_present"] = None
    messy.loc[3, "country"] = "ZZ"
    assert np.isfinite(fitted.score_samples(messy)).all()


def test_extra_columns_are_ignored_and_missing_ones_named(fitted, data):
    extra = data.head(5).assign(something_else=1)
    np.testing.assert_array_equal(fitted.score_samples(extra), fitted.score_samples(data.head(5)))
    with pytest.raises(SchemaError, match="'amount'"):
        fitted.score(data.drop(columns=["amount"]))


def test_not_fitted():
    with pytest.raises(NotFittedError):
        FraudVAE().score(pd.DataFrame({"a": [1.0]}))


def test_calibrate_moves_the_threshold(model_dir):
    det = FraudVAE.load(model_dir)
    before = det.threshold_.value
    det.calibrate(target_fpr=0.2)
    assert det.threshold_.value < before
    det.calibrate(target_fpr=0.01)
    assert det.threshold_.value == pytest.approx(before)


def test_same_seed_same_model(data):
    small = data.head(600)
    a = FraudVAE(label_column="is_fraud", epochs=3, seed=3).fit(small).score_samples(small)
    b = FraudVAE(label_column="is_fraud", epochs=3, seed=3).fit(small).score_samples(small)
    np.testing.assert_array_equal(a, b)


def test_save_load_round_trip(fitted, model_dir, data):
    loaded = FraudVAE.load(model_dir)
    np.testing.assert_array_equal(loaded.score_samples(data), fitted.score_samples(data))
    assert loaded.threshold_ == fitted.threshold_
    assert loaded.version_ == fitted.version_
    assert sorted(p.name for p in model_dir.iterdir()) == ["manifest.json", "model.json", "weights.safetensors"]


def test_tampered_model_is_refused(model_dir, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    meta = json.loads((copy / "model.json").read_text())
    meta["threshold"]["value"] = 1e9
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="sha256"):
        FraudVAE.load(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(ModelFileError, match="manifest.json"):
        FraudVAE.load(copy)
    with pytest.raises(ModelFileError, match="does not exist"):
        FraudVAE.load(tmp_path / "nowhere")
    with pytest.raises(ModelFileError, match="is not a directory"):
        FraudVAE.load(copy / "model.json")


def test_saving_over_a_model_replaces_it_whole(fitted, tmp_path):
    path = tmp_path / "m"
    fitted.save(path)
    (path / "model.json").write_text("stale")  # an earlier model's file: replaced
    fitted.save(path)
    assert FraudVAE.load(path).version_ == fitted.version_
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_saving_into_a_folder_of_other_files_is_refused(fitted, tmp_path):
    path = tmp_path / "mine"
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="notes.txt"):
        fitted.save(path)
    assert (path / "notes.txt").read_text() == "mine" and sorted(p.name for p in path.iterdir()) == ["notes.txt"]
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(DataError, match="is a file"):
        fitted.save(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "keep"


def test_describe_is_json_ready(fitted):
    d = json.loads(json.dumps(fitted.describe()))
    assert d["threshold"] == fitted.threshold_.value
    assert d["schema"]["id_column"] == "transaction_id"
    assert d["metrics"]["fraud_rows"] > 0 and "history" not in d["metrics"]


def test_point_mass_option(tmp_path):
    def rows(n, seed):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(n, 2))
        count = np.where(rng.random(n) < 0.9, 0, 1 + rng.poisson(2.0, n)).astype(float)
        return pd.DataFrame({"chargebacks": count, "a": z[:, 0], "b": 0.8 * z[:, 0] + 0.6 * z[:, 1]})

    train, test = rows(3000, 0), rows(500, 1)
    assert FraudVAE(seed=0, epochs=5).fit(train).preprocessor_.numeric["chargebacks"].point_mass is None
    det = FraudVAE(seed=0, point_mass_share=0.25).fit(train)
    assert det.preprocessor_.numeric["chargebacks"].point_mass == 0.0
    out = det.score(test)
    assert np.isfinite(out["score"]).all() and 0.0 < out["flag"].mean() < 0.05
    odd = det.score(pd.DataFrame({"chargebacks": [40.0, 0.0], "a": [0.0, 0.0], "b": [0.0, 0.0]}))
    assert odd["flag"].astype(int).tolist() == [1, 0] and odd["top_features"].iloc[0].startswith("chargebacks")
    again = FraudVAE.load(det.save(tmp_path / "m"))
    assert again.point_mass_share == 0.25
    np.testing.assert_array_equal(again.score(test)["score"], out["score"])
    with pytest.raises(ConfigError, match="point_mass_share"):
        FraudVAE(point_mass_share=1.5).fit(train)


def _edit(model_dir, tmp_path, change) -> object:
    """A copy of the model with model.json edited and the manifest's digests recomputed to match (what
    an attacker with write access would do)."""
    import hashlib
    import shutil

    copy = tmp_path / "edited"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(model_dir, copy)
    meta = json.loads((copy / "model.json").read_text())
    change(meta)
    (copy / "model.json").write_text(json.dumps(meta))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["model.json"] = hashlib.sha256((copy / "model.json").read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_an_edited_model_cannot_keep_its_version_nor_load_non_finite_state(fitted, model_dir, tmp_path):
    loaded = FraudVAE.load(model_dir)
    assert loaded.version_ == json.loads((model_dir / "manifest.json").read_text())["version"]
    edited = FraudVAE.load(_edit(model_dir, tmp_path, lambda m: m["threshold"].update(value=1e9)))
    assert edited.version_ != loaded.version_  # the version comes from the content, on every load

    def nan_scale(m):
        m["preprocessing"]["numeric"]["amount"]["scale"] = float("nan")

    with pytest.raises(ModelFileError, match=r"not finite at preprocessing\.numeric\.amount\.scale"):
        FraudVAE.load(_edit(model_dir, tmp_path, nan_scale))
    with pytest.raises(ModelFileError, match=r"not finite at threshold\.value"):
        FraudVAE.load(_edit(model_dir, tmp_path, lambda m: m["threshold"].update(value=float("inf"))))

    def drop_category(m):
        m["preprocessing"]["categorical"]["country"]["vocabulary"].pop()

    with pytest.raises(ModelFileError, match="does not fit the network"):
        FraudVAE.load(_edit(model_dir, tmp_path, drop_category))



def test_validation_choices_hold_out_the_rows_they_say(data):
    """tail: the last normal rows; interleaved: rows spread evenly; random: a seeded share. The
    threshold comes from exactly the held-out rows' scores."""
    normal = data[data["is_fraud"] == 0]
    n_val = int(round(0.3 * len(normal)))
    for how in ("tail", "interleaved", "random"):
        det = FraudVAE(label_column="is_fraud", id_column="transaction_id", epochs=3, seed=0, validation=how).fit(data)
        scores = det.score_samples(normal)
        held = np.isin(np.round(scores, 9), np.round(det.threshold_.validation_scores, 9))
        assert det.metrics_["validation_rows"] == n_val == len(det.threshold_.validation_scores)
        assert held.sum() >= n_val
        positions = np.flatnonzero(held)
        if how == "tail":
            assert positions.min() >= len(normal) - n_val
        if how == "interleaved":  # every tenth of the file holds about its share
            per_tenth = np.histogram(positions, bins=10, range=(0, len(normal)))[0]
            assert per_tenth.min() >= 0.8 * n_val / 10
    with pytest.raises(ConfigError, match="validation"):
        FraudVAE(validation="crossfit").fit(data)


def test_signed_models_load_only_with_a_valid_signature(fitted, model_dir, tmp_path, monkeypatch):
    import shutil
    import subprocess
    import sys

    monkeypatch.setenv("FRAUDVAE_MODEL_KEY", "s3cret")
    signed = fitted.save(tmp_path / "signed")
    assert (signed / "signature.json").exists()
    assert FraudVAE.load(signed).version_ == fitted.version_
    with pytest.raises(ModelFileError, match="not signed"):  # an unsigned model, with a key set
        FraudVAE.load(model_dir)
    monkeypatch.setenv("FRAUDVAE_MODEL_KEY", "another")
    with pytest.raises(ModelFileError, match="signature does not match"):
        FraudVAE.load(signed)
    # edited and re-digested: the manifest is consistent, the signature is not
    monkeypatch.setenv("FRAUDVAE_MODEL_KEY", "s3cret")
    edited = _edit(signed, tmp_path, lambda m: m["threshold"].update(value=1e9))
    shutil.copy(signed / "signature.json", edited / "signature.json")
    with pytest.raises(ModelFileError, match="signature does not match"):
        FraudVAE.load(edited)
    # `fraudvae sign` signs an existing model with the configured key
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    env = {**__import__("os").environ, "FRAUDVAE_MODEL_KEY": "s3cret"}
    r = subprocess.run([sys.executable, "-m", "fraudvae", "sign", "--model", str(copy)], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert FraudVAE.load(copy).version_ == fitted.version_
    monkeypatch.delenv("FRAUDVAE_MODEL_KEY")
    assert FraudVAE.load(signed).version_ == fitted.version_  # no key configured: nothing to check
    r = subprocess.run([sys.executable, "-m", "fraudvae", "sign", "--model", str(copy)],
                       env={k: v for k, v in env.items() if k != "FRAUDVAE_MODEL_KEY"}, capture_output=True, text=True)
    assert r.returncode == 2 and "FRAUDVAE_MODEL_KEY" in r.stderr


def test_fit_gives_the_version_its_saved_files_have(data, tmp_path):
    det = FraudVAE(label_column="is_fraud", id_column="transaction_id", epochs=3, seed=0).fit(data.head(600))
    fitted_version = det.version_
    det.save(tmp_path / "m")
    assert det.version_ == fitted_version == FraudVAE.load(tmp_path / "m").version_
    det.calibrate(target_fpr=0.05)  # another threshold: another model, with its parent named
    assert det.version_ != fitted_version and det.state_.lineage["parent_version"] == fitted_version
