"""`FraudVAE.sample`, `fraudvae sample` and the preprocessor's inverse: synthetic rows in original form."""

import numpy as np
import pandas as pd
import pytest
import torch

from fraudvae import ConfigError
from fraudvae.cli import main
from fraudvae.inverse import to_columns
from fraudvae.model import VAE, ModelConfig


def test_sample_shape_types_and_vocabulary(fitted, data):
    s = fitted.sample(2000, seed=1)
    assert len(s) == 2000 and list(s.columns) == fitted.schema_.names()
    normal = data[data["is_fraud"] == 0]
    for name in fitted.schema_.names("categorical"):
        assert set(s[name].dropna()) <= set(fitted.preprocessor_.categorical[name].vocabulary)
    assert s["card_present"].dtype == "boolean"  # booleans stay booleans
    assert s["hour"].dtype == "Int64"  # whole numbers stay whole
    for name in fitted.schema_.names("numeric"):  # original units, within the training range
        real, fake = normal[name].dropna(), s[name].dropna().astype(float)
        assert real.min() - 1e-9 <= fake.min() and fake.max() <= real.max() + 1e-9, name
        assert abs(fake.median() - real.median()) < 0.5 * real.std(), name
    # amounts keep their cents; device_trust is missing as often as in the data (card-present rows)
    np.testing.assert_allclose(s["amount"], s["amount"].round(2))
    assert abs(s["device_trust"].isna().mean() - normal["device_trust"].isna().mean()) < 0.05
    shares = s["merchant_category"].value_counts(normalize=True)
    real_shares = normal["merchant_category"].value_counts(normalize=True)
    assert (shares - real_shares).abs().max() < 0.05


def test_sample_reproducible_with_a_seed(fitted):
    pd.testing.assert_frame_equal(fitted.sample(300, seed=5), fitted.sample(300, seed=5))
    assert not fitted.sample(300, seed=5).equals(fitted.sample(300, seed=6))


def test_sample_needs_rows(fitted):
    with pytest.raises(ConfigError, match="at least 1"):
        fitted.sample(0)


def test_inverse_undoes_transform(fitted, data):
    pre = fitted.preprocessor_
    enc = pre.transform(data)
    back = to_columns(pre, enc.numeric, enc.binary, enc.categorical)
    for name in fitted.schema_.names("numeric"):  # float32 scaling: equal at the data's precision
        np.testing.assert_allclose(back[name].astype(float), data[name].clip(
            pre.numeric[name].min, pre.numeric[name].max), rtol=1e-4, atol=1e-4)
    assert (back["card_present"].astype(bool) == data["card_present"]).all()
    for name in fitted.schema_.names("categorical"):
        known = data[name].isin(pre.categorical[name].vocabulary)
        assert (back[name][known] == data[name][known]).all() and back[name][~known].isna().all()


def test_model_sample_never_draws_the_banned_category():
    torch.manual_seed(0)
    model = VAE(ModelConfig(2, 1, (4, 3), (16, 8), 2, members=3)).eval()
    numeric, binary, categorical = model.sample(5000, torch.Generator().manual_seed(0), never=0)
    assert numeric.shape == (5000, 2) and binary.shape == (5000, 1) and categorical.shape == (5000, 2)
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    assert (categorical != 0).all() and categorical[:, 0].max() <= 3 and categorical[:, 1].max() <= 2


def test_cli_sample_writes_a_csv(model_dir, fitted, tmp_path, capsys):
    out = tmp_path / "synthetic.csv"
    assert main(["sample", "--model", str(model_dir), "-n", "150", "--output", str(out), "--seed", "3"]) == 0
    s = pd.read_csv(out)
    assert len(s) == 150 and list(s.columns) == fitted.schema_.names()
    assert set(s["card_present"].dropna()) <= {True, False}
    assert "wrote 150 synthetic rows" in capsys.readouterr().out
    again = tmp_path / "again.csv"
    assert main(["sample", "--model", str(model_dir), "-n", "150", "--output", str(again), "--seed", "3"]) == 0
    assert out.read_text() == again.read_text()


def test_cli_sample_bad_model_dir(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["sample", "--model", str(tmp_path / "nope"), "-n", "5", "--output", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err and not out.exists()
