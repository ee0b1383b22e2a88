"""Shared fixtures: small seeded synthetic transactions and one model fitted on them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudvae import FraudVAE, example_transactions


@pytest.fixture(scope="session")
def data() -> pd.DataFrame:
    """3,000 example transactions (numeric, categorical, boolean columns, gaps), 3% fraud."""
    return example_transactions(rows=3000, fraud_rate=0.03, seed=7)


@pytest.fixture(scope="session")
def fitted(data: pd.DataFrame) -> FraudVAE:
    return FraudVAE(label_column="is_fraud", id_column="transaction_id", epochs=40, seed=0).fit(data)


@pytest.fixture(scope="session")
def model_dir(fitted: FraudVAE, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted.save(tmp_path_factory.mktemp("models") / "m")


@pytest.fixture
def mixed() -> pd.DataFrame:
    """A small frame with every kind of column the schema knows."""
    rng = np.random.default_rng(0)
    n = 200
    return pd.DataFrame({
        "row_id": np.arange(n),
        "amount": rng.lognormal(3, 1, n),
        "code": rng.integers(1, 4, n),
        "city": rng.choice(["a", "b", "c"], n),
        "flagged": rng.random(n) < 0.3,
        "const": 5,
        "note": [f"free text note number {i} with words" for i in range(n)],
        "ref": [f"R{i:05d}" for i in range(n)],
        "label": rng.random(n) < 0.1,
    })
