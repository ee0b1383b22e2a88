import numpy as np
import pandas as pd
import pytest

from fraudvae.errors import SchemaError
from fraudvae.preprocess import MISSING, OTHER, Preprocessor
from fraudvae.schema import infer_schema


def _fit(df, **kw):
    return Preprocessor.fit(df, infer_schema(df, **kw))


def test_categories_missing_and_unseen(mixed):
    pre = _fit(mixed, label_column="label")
    probe = mixed.head(3).copy()
    probe["city"] = ["a", None, "zz"]
    enc = pre.transform(probe)
    j = list(pre.state["categorical"]).index("city")
    assert enc.categorical[0, j] >= 2
    assert enc.categorical[1, j] == MISSING
    assert enc.categorical[2, j] == OTHER


def test_rare_categories_go_to_other():
    df = pd.DataFrame({"c": ["a", "b"] * 50 + ["rare"] * 2, "x": np.arange(102.0) % 7})
    pre = _fit(df)
    assert pre.state["categorical"]["c"]["vocabulary"] == ["a", "b"]


def test_numeric_gaps_get_an_indicator():
    rng = np.random.default_rng(1)
    x = rng.normal(size=100)
    x[::10] = np.nan
    df = pd.DataFrame({"x": x, "y": rng.normal(size=100)})
    pre = _fit(df)
    assert pre.state["numeric"]["x"]["indicator"] and not pre.state["numeric"]["y"]["indicator"]
    enc = pre.transform(df)
    assert enc.binary.shape == (100, 1)
    assert enc.binary[:, 0].sum() == 10
    assert (enc.numeric_observed[::10, 0] == 0).all() and np.isfinite(enc.numeric).all()


def test_codes_agree_however_parsed():
    df = pd.DataFrame({"code": [1, 2, 3] * 20, "x": np.arange(60.0)})
    pre = _fit(df)
    a = pre.transform(pd.DataFrame({"code": [1, 2], "x": [0.0, 1.0]}))
    b = pre.transform(pd.DataFrame({"code": [1.0, "2"], "x": [0.0, 1.0]}))
    assert (a.categorical == b.categorical).all()


def test_text_in_numeric_column_is_named_with_row(mixed):
    pre = _fit(mixed, label_column="label")
    bad = mixed.copy()
    bad["amount"] = bad["amount"].astype(object)
    bad.loc[17, "amount"] = "lots"
    with pytest.raises(SchemaError, match=r"column 'amount' must be numeric, got row 17: 'lots'"):
        pre.transform(bad)


def test_infinity_is_refused(mixed):
    pre = _fit(mixed, label_column="label")
    bad = mixed.copy()
    bad.loc[3, "amount"] = np.inf
    with pytest.raises(SchemaError, match="must be finite, got row 3"):
        pre.transform(bad)


def test_extreme_values_are_clipped(mixed):
    pre = _fit(mixed, label_column="label")
    probe = mixed.head(2).copy()
    probe["amount"] = [1e300, -1e300]
    enc = pre.transform(probe)
    assert np.isfinite(enc.numeric).all()


def test_levels_missing_from_training_rows_stay_finite():
    """The schema is inferred on the whole file; training normals may lack a level or all values."""
    full = pd.DataFrame({"b": [0.0, 1.0] * 50, "x": np.arange(100.0), "only_fraud": [np.nan] * 98 + [1.0, 2.0]})
    schema = infer_schema(full)
    pre = Preprocessor.fit(full[full["b"] == 0], schema)  # training rows: b constant, only_fraud empty
    enc = pre.transform(full)
    assert np.isfinite(enc.numeric).all() and np.isfinite(enc.binary).all()
    j = list(pre.state["binary"]).index("b")
    assert set(enc.binary[:, j]) == {0.0, 1.0}
