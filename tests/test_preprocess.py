import numpy as np
import pandas as pd
import pytest

from fraudvae.errors import SchemaError
from fraudvae.inverse import to_columns
from fraudvae.preprocess import MISSING, OTHER, PreprocessConfig, Preprocessor
from fraudvae.schema import infer_schema


def _fit(df, **kw):
    return Preprocessor.fit(df, infer_schema(df, **kw))


def test_categories_missing_and_unseen(mixed):
    pre = _fit(mixed, label_column="label")
    probe = mixed.head(3).copy()
    probe["city"] = ["a", None, "zz"]
    enc = pre.transform(probe)
    j = list(pre.categorical).index("city")
    assert enc.categorical[0, j] >= 2
    assert enc.categorical[1, j] == MISSING
    assert enc.categorical[2, j] == OTHER


def test_rare_categories_go_to_other():
    df = pd.DataFrame({"c": ["a", "b"] * 50 + ["rare"] * 2, "x": np.arange(102.0) % 7})
    pre = _fit(df)
    assert pre.categorical["c"].vocabulary == ("a", "b")


def test_numeric_gaps_get_an_indicator():
    rng = np.random.default_rng(1)
    x = rng.normal(size=100)
    x[::10] = np.nan
    df = pd.DataFrame({"x": x, "y": rng.normal(size=100)})
    pre = _fit(df)
    assert pre.numeric["x"].indicator and not pre.numeric["y"].indicator
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
    with pytest.raises(SchemaError, match=r"column 'amount' must be numeric, got 'lots' \(row 17\)"):
        pre.transform(bad)


def test_infinity_is_refused(mixed):
    pre = _fit(mixed, label_column="label")
    bad = mixed.copy()
    bad.loc[3, "amount"] = np.inf
    with pytest.raises(SchemaError, match=r"must be finite, got inf \(row 3\)"):
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
    j = list(pre.binary).index("b")
    assert set(enc.binary[:, j]) == {0.0, 1.0}


def _zero_inflated(n: int, seed: int) -> pd.DataFrame:
    """`chargebacks` is 0 on ~90% of rows, otherwise a small count; `x` a plain number."""
    rng = np.random.default_rng(seed)
    count = np.where(rng.random(n) < 0.9, 0, 1 + rng.poisson(2.0, n)).astype(float)
    return pd.DataFrame({"chargebacks": count, "x": rng.normal(size=n)})


def test_a_dominant_value_is_a_point_mass_with_its_own_indicator():
    df = _zero_inflated(1000, 0)
    df.loc[:9, "chargebacks"] = np.nan
    assert _fit(df).numeric["chargebacks"].point_mass is None  # an option, off by default
    pre = Preprocessor.fit(df, infer_schema(df), PreprocessConfig(point_mass_share=0.25))
    s = pre.numeric["chargebacks"]
    rest = df["chargebacks"][df["chargebacks"] > 0]
    assert s.point_mass == 0.0 and s.point_mass_share == pytest.approx((df["chargebacks"] == 0).mean() / 0.99)
    assert s.center == pytest.approx(rest.mean()) and s.scale == pytest.approx(rest.std(ddof=0))
    assert pre.numeric["x"].point_mass is None  # a continuous column has no atom
    assert pre.flag_layout() == [("missing", "chargebacks"), ("point_mass", "chargebacks")]
    enc = pre.transform(df)
    j = list(pre.numeric).index("chargebacks")
    zero, gap = (df["chargebacks"] == 0).to_numpy(), df["chargebacks"].isna().to_numpy()
    assert (enc.binary[zero, 1] == 1).all() and (enc.binary[~zero & ~gap, 1] == 0).all()
    assert np.allclose(enc.binary[gap, 1], s.point_mass_share)  # unknown: the training share
    # the Gaussian sees only the other values; the network input at the atom is the centre
    assert (enc.numeric_observed[zero | gap, j] == 0).all() and (enc.numeric_observed[~zero & ~gap, j] == 1).all()
    assert (enc.numeric[zero, j] == 0).all()
    back = to_columns(pre, enc.numeric, enc.binary, enc.categorical)
    assert back["chargebacks"][~gap].astype(float).tolist() == df["chargebacks"][~gap].tolist()
    assert back["chargebacks"][gap].isna().all()


def test_no_point_mass_below_the_share():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"x": rng.normal(size=500), "y": rng.integers(0, 5, 500) * 10.0})  # 5 values, ~20% each
    fitted = Preprocessor.fit(df, infer_schema(df), PreprocessConfig(point_mass_share=0.25))
    assert fitted.numeric["y"].point_mass is None
    share = (df["y"] == df["y"].mode()[0]).mean()
    pre = Preprocessor.fit(df, infer_schema(df), PreprocessConfig(point_mass_share=0.15))
    assert pre.numeric["y"].point_mass == df["y"].mode()[0]
    assert pre.numeric["y"].point_mass_share == pytest.approx(share)


def test_models_saved_without_point_masses_still_load():
    df = _zero_inflated(300, 1)
    pre = Preprocessor.fit(df, infer_schema(df), PreprocessConfig(point_mass_share=0.25))
    old = {k: {c: {f: v for f, v in s.items() if f not in ("spike", "spike_share")} for c, s in cols.items()}
           if k == "numeric" else cols for k, cols in pre.to_dict().items()}
    enc = Preprocessor.from_dict(pre.schema, old).transform(df)
    assert enc.binary.shape == (300, 0) and enc.numeric_observed.all()


def test_typed_and_file_values_read_the_same_and_typed_ones_strictly():
    from fraudvae import readers as read

    df = pd.DataFrame({"x": [1.5, None, -2.0], "b": [True, None, False], "c": ["a", None, "7"]})
    pre = _fit(pd.concat([df] * 10, ignore_index=True))
    columns = {name: [None if pd.isna(v) else v for v in df[name]] for name in df.columns}
    by_file, typed = pre.transform(df), pre.transform_columns(columns, 3)
    for part in ("numeric", "observed", "binary", "categorical"):
        assert np.array_equal(getattr(by_file, part), getattr(typed, part)), part
    assert np.isnan(read.numbers(pd.Series(["1,5", None]), "x", decimal=",")).tolist() == [False, True]
    with pytest.raises(SchemaError, match="record 0, column 'x'"):
        read.numbers(["1.5"], "x", typed=True)  # text is a number in a file, not in typed JSON
    # the keys of whole columns of one type equal those read value by value (a mixed column)
    for values in ([7, -3, 0, None, 2**70], [" a ", "b"], [True, False, None], [1.0, 2.5, None]):
        assert read.keys(values, "c", typed=True) == read.keys([*values, "z"], "c", typed=True)[:-1], values


def test_a_gap_masks_a_binary_value_and_a_point_mass_indicator_but_not_the_gaps_own():
    """`observed` for the 0/1 features: a binary column's value term and (models since
    `gap_says_nothing`) a point mass's indicator say nothing where the value was a gap; the missing
    indicators themselves always count."""
    rng = np.random.default_rng(3)
    x = np.where(rng.random(300) < 0.6, 0.0, rng.normal(5, 1, 300))
    x[::10] = np.nan
    b = (rng.random(300) < 0.5).astype(object)
    b[5::10] = None
    df = pd.DataFrame({"x": x, "b": b, "y": rng.normal(size=300)})
    pre = Preprocessor.fit(df, infer_schema(df), PreprocessConfig(atoms=("x",)))
    assert pre.numeric["x"].point_mass == 0.0 and pre.numeric["x"].gap_says_nothing
    enc = pre.transform(df)
    layout = pre.flag_layout()
    assert set(layout) == {("value", "b"), ("missing", "x"), ("missing", "b"), ("point_mass", "x")}
    flags = dict(zip(layout, enc.binary.T, strict=True))
    observed = dict(zip(layout, enc.observed[:, len(pre.numeric):len(pre.numeric) + len(layout)].T, strict=True))
    x_gap, b_gap = np.isnan(x), pd.isna(b)
    np.testing.assert_array_equal(flags[("missing", "x")], x_gap)
    np.testing.assert_array_equal(flags[("missing", "b")], b_gap)
    np.testing.assert_array_equal(flags[("point_mass", "x")][~x_gap], x[~x_gap] == 0.0)
    assert np.all(flags[("point_mass", "x")][x_gap] == np.float32(pre.numeric["x"].point_mass_share))
    np.testing.assert_array_equal(flags[("value", "b")][~b_gap], b[~b_gap].astype(bool))
    np.testing.assert_array_equal(observed[("value", "b")], ~b_gap)
    np.testing.assert_array_equal(observed[("point_mass", "x")], ~x_gap)
    assert observed[("missing", "x")].all() and observed[("missing", "b")].all()
    # a model saved before `gap_says_nothing`: the indicator counts where the number was a gap
    old = Preprocessor.from_dict(pre.schema, pre.to_dict() | {"numeric": {
        k: {kk: vv for kk, vv in v.items() if kk != "spike_gap_masked"} for k, v in pre.to_dict()["numeric"].items()}})
    seen_old = dict(zip(layout, old.transform(df).observed[:, len(pre.numeric):len(pre.numeric) + len(layout)].T,
                        strict=True))
    assert seen_old[("point_mass", "x")].all()
    np.testing.assert_array_equal(seen_old[("value", "b")], ~b_gap)
