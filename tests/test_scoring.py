"""The scoring path: the float32 network on padded blocks (a row's bits the same in any batch), its
float64 fallback, the top-k ranking and the columnar encoding of Arrow string columns."""

import numpy as np
import pandas as pd
import pytest
import torch

from fraudvae import FraudVAE, example_transactions
from fraudvae import scoring as scoring_module
from fraudvae.preprocess import arrow_keys


def test_a_row_has_the_same_bits_alone_and_in_any_block(fitted: FraudVAE, data: pd.DataFrame,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = fitted._scorer()
    enc = fitted.preprocessor_.transform(data.head(700))
    whole_terms, whole_kl = scorer.terms(enc)
    monkeypatch.setattr(scoring_module, "SCORE_BATCH", 128)  # blocks of 128 rows and a padded last one
    blocked_terms, blocked_kl = scorer.terms(enc)
    if scorer.fast is not None:  # the float32 path (where the probe found the kernels position-free): bits
        np.testing.assert_array_equal(blocked_terms, whole_terms)
        np.testing.assert_array_equal(blocked_kl, whole_kl)
    np.testing.assert_allclose(blocked_terms.sum(1) + blocked_kl, whole_terms.sum(1) + whole_kl, rtol=1e-9, atol=0)
    for i in (0, 1, 15, 16, 17, 333, 699):  # alone, and in requests of odd sizes at odd places
        for size in (1, 3, 17, 40):
            start = max(0, i - size + 1)
            terms, kl = scorer.terms(enc.take(slice(start, start + size)))
            np.testing.assert_allclose(terms[i - start].sum() + kl[i - start], whole_terms[i].sum() + whole_kl[i],
                                       rtol=1e-9, atol=0)


def test_float32_scores_agree_with_the_float64_network(fitted: FraudVAE, data: pd.DataFrame) -> None:
    scorer = fitted._scorer()
    enc = fitted.preprocessor_.transform(data.head(500))
    terms, kl = scorer.terms(enc)
    fast, scorer.fast = scorer.fast, None
    try:
        terms64, kl64 = scorer.terms(enc)
    finally:
        scorer.fast = fast
    s, s64 = terms.sum(1) + kl, terms64.sum(1) + kl64
    assert np.all(np.abs(s - s64) <= 1e-6 * np.maximum(np.abs(s64), 1.0))


def test_the_probe_lets_no_batch_dependent_shapes_through(fitted: FraudVAE, data: pd.DataFrame,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of any size (no padding): where the probe still says float32 is safe, rows must keep
    their bits in blocks of 1, 2 and 3 rows; where it does not, the scorer runs in float64."""
    monkeypatch.setattr(scoring_module, "PAD_ROWS", 1)
    scorer = scoring_module.Scorer(fitted.model_, fitted.schema_.names(), fitted.preprocessor_.column_assignment(),
                                   torch.device("cpu"))
    enc = fitted.preprocessor_.transform(data.head(64))
    whole, _ = scorer.terms(enc)
    if scorer.fast is not None:
        for size in (1, 2, 3):
            np.testing.assert_array_equal(scorer.terms(enc.take(slice(10, 10 + size)))[0], whole[10: 10 + size])


def test_top_k_is_the_stable_order_of_the_excess_with_gaps_last() -> None:
    rng = np.random.default_rng(0)
    n, c = 2000, 9
    scorer = scoring_module.Scorer.__new__(scoring_module.Scorer)
    scorer.columns = np.array([f"c{j}" for j in range(c)], dtype=object)
    by_column = rng.integers(0, 4, (n, c)).astype(float)  # many ties
    unobserved = rng.random((n, c)) < 0.3
    unobserved[:5] = True  # rows with every column a gap
    baseline = np.zeros(c)
    for k in (1, 3, c):
        top, excess = scorer.ranked(unobserved, by_column, baseline, k)
        full = np.where(unobserved, -np.inf, by_column)
        order = np.argsort(-full, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top, scorer.columns[order])
        np.testing.assert_array_equal(excess, np.take_along_axis(full, order, axis=1))
    top, _ = scorer.ranked(np.zeros((n, c), bool), by_column, baseline, 3)
    np.testing.assert_array_equal(top, scorer.columns[np.argsort(-by_column, axis=1, kind="stable")[:, :3]])


def test_joined_top_features_are_the_rows_own() -> None:
    rng = np.random.default_rng(1)
    names = np.array(["amount", "merchant", "country", "hour"], dtype=object)
    index = np.stack([rng.permutation(4)[:3] for _ in range(500)])
    s = scoring_module.Scores(np.zeros(500), np.zeros(500, bool), np.ones(500), names[index], np.zeros((500, 4)), index)
    want = [";".join(row) for row in names[index]]
    assert s.joined_top_features().tolist() == want
    assert s.take(slice(7, 9)).joined_top_features().tolist() == want[7:9]
    assert scoring_module.Scores.concat([s.take(slice(0, 5)), s.take(slice(5, 500))]).joined_top_features().tolist() \
        == want


def test_arrow_string_columns_encode_as_python_strings_do() -> None:
    train = example_transactions(rows=2000, seed=0)
    det = FraudVAE(label_column="is_fraud", id_column="transaction_id", epochs=2, seed=0).fit(train)
    new = example_transactions(rows=300, seed=1)
    odd = [" grocery", "grocery ", None, "never seen", "", "  ", "\x1cgrocery"]
    new.loc[new.index[: len(odd)], "merchant_category"] = odd
    arrow = new.astype({"merchant_category": pd.StringDtype("pyarrow")})
    python = new.astype({"merchant_category": object})
    assert arrow_keys(arrow["merchant_category"]) is not None and arrow_keys(python["merchant_category"]) is None
    a, p = det.preprocessor_.transform(arrow), det.preprocessor_.transform(python)
    np.testing.assert_array_equal(a.categorical, p.categorical)
    np.testing.assert_array_equal(a.observed, p.observed)
    np.testing.assert_array_equal(det.score_samples(arrow), det.score_samples(python))
