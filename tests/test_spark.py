"""`fraudvae.spark.score` in local[2] mode: the CLI's scores, row for row."""

import warnings

import numpy as np
import pandas as pd
import pytest

from fraudvae import ConfigError, DataError, SchemaError, example_transactions
from fraudvae.cli import main

pyspark = pytest.importorskip("pyspark", reason="the spark extra is not installed")  # CI installs it
from fraudvae.spark import score  # noqa: E402

# pyspark 4 warns that it does not fully support pandas 3 yet (FutureWarning, DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pyspark's notice about pandas 3
        session = (SparkSession.builder.master("local[2]").appName("fraudvae-tests")
                   .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def scored_by_cli(model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("spark")
    example_transactions(rows=700, fraud_rate=0.05, seed=12).to_csv(d / "new.csv", index=False)
    assert main(["score", str(d / "new.csv"), "--model", str(model_dir), "--output", str(d / "cli.csv"),
                 "--quiet"]) == 0
    return d / "new.csv", pd.read_csv(d / "cli.csv")


@pytest.mark.parametrize("ship", [False, True])
def test_spark_scores_equal_the_cli(spark, model_dir, scored_by_cli, ship):
    path, cli = scored_by_cli
    df = spark.read.csv(str(path), header=True, inferSchema=True).repartition(3)  # several batches
    out = score(df, model_dir, ship=ship)
    assert out.columns == [*df.columns, "score", "flag", "p_value", "top_features"]
    assert dict(out.dtypes)["flag"] == "boolean" and dict(out.dtypes)["score"] == "double"
    got = out.toPandas().set_index("transaction_id").loc[cli["transaction_id"]]
    assert len(got) == len(cli)
    np.testing.assert_allclose(got["score"], cli["score"], rtol=1e-6)
    np.testing.assert_allclose(got["p_value"], cli["p_value"], rtol=1e-9)
    assert (got["flag"].astype(int).to_numpy() == cli["flag"].to_numpy()).all()
    assert (got["top_features"].to_numpy() == cli["top_features"].to_numpy()).all()


def test_spark_refuses_bad_frames_on_the_driver(spark, model_dir, scored_by_cli):
    path, _ = scored_by_cli
    df = spark.read.csv(str(path), header=True, inferSchema=True)
    with pytest.raises(SchemaError, match="'amount'"):
        score(df.drop("amount"), model_dir)
    with pytest.raises(ConfigError, match="'score'"):
        score(df.withColumnRenamed("risk_1", "score"), model_dir)


def test_spark_computes_the_history_as_the_cli_does(spark, tmp_path):
    from test_history import START, cards

    data = cards(n_cards=20, days=18)
    when = pd.to_datetime(data["when"])
    data[when < START + pd.Timedelta(days=15)].to_csv(tmp_path / "train.csv", index=False)
    test = data[when >= START + pd.Timedelta(days=15)].drop(columns="planted")
    test.sample(frac=1.0, random_state=0).to_csv(tmp_path / "test.csv", index=False)  # not in time order
    assert main(["fit", str(tmp_path / "train.csv"), "--model", str(tmp_path / "m"), "--id-column", "tx", "--drop",
                 "planted", "--entity-column", "card_id", "--time-column", "when", "--epochs", "5", "--quiet"]) == 0
    assert main(["score", str(tmp_path / "test.csv"), "--model", str(tmp_path / "m"), "--output",
                 str(tmp_path / "cli.csv"), "--quiet"]) == 0
    cli = pd.read_csv(tmp_path / "cli.csv")
    df = spark.read.csv(str(tmp_path / "test.csv"), header=True, inferSchema=True).repartition(3)
    out = score(df, tmp_path / "m")
    assert out.columns == [*df.columns, "score", "flag", "p_value", "top_features"]
    got = out.toPandas().set_index("tx").loc[cli["tx"]]
    np.testing.assert_allclose(got["score"], cli["score"], rtol=1e-9)
    with pytest.raises(SchemaError, match="'card_id'"):
        score(df.drop("card_id"), tmp_path / "m")
    # as the command line, the training rows again are refused: they are in the saved history already
    train = spark.read.csv(str(tmp_path / "train.csv"), header=True, inferSchema=True)
    with pytest.raises(DataError, match="come before the end of the history the model holds"):
        score(train, tmp_path / "m")


def test_spark_counts_confirmed_frauds_as_the_cli_does(spark, tmp_path):
    from test_history_labels import START, terminals

    data = terminals(n=8, days=30, seed=2)
    data["when"] = data["when"].dt.strftime("%Y-%m-%d %H:%M:%S")
    early = pd.to_datetime(data["when"]) < START + pd.Timedelta(days=17)
    data[early].to_csv(tmp_path / "train.csv", index=False)
    data[~early].to_csv(tmp_path / "test.csv", index=False)
    assert main(["fit", str(tmp_path / "train.csv"), "--model", str(tmp_path / "m"), "--id-column", "tx",
                 "--label-column", "is_fraud", "--entity-column", "terminal_id", "--label-delay", "2d",
                 "--epochs", "4", "--quiet"]) == 0
    assert main(["score", str(tmp_path / "test.csv"), "--model", str(tmp_path / "m"), "--output",
                 str(tmp_path / "cli.csv"), "--quiet"]) == 0
    cli = pd.read_csv(tmp_path / "cli.csv")
    df = spark.read.csv(str(tmp_path / "test.csv"), header=True, inferSchema=True).repartition(3)
    got = score(df, tmp_path / "m").toPandas().set_index("tx").loc[cli["tx"]]
    np.testing.assert_allclose(got["score"], cli["score"], rtol=1e-9)
