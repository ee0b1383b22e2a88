import pandas as pd

from fraudvae import example_transactions


def test_example_data_is_seeded_and_mixed():
    a = example_transactions(rows=1000, fraud_rate=0.1, seed=1)
    pd.testing.assert_frame_equal(a, example_transactions(rows=1000, fraud_rate=0.1, seed=1))
    assert len(a) == 1000 and a["is_fraud"].sum() == 100
    assert a["transaction_id"].is_unique
    assert a["device_trust"].isna().any() and a["customer_age"].isna().any()
    assert a["card_present"].dtype == bool and pd.api.types.is_string_dtype(a["merchant_category"])
