"""Scoring a Spark DataFrame with a saved model: the same scorer as `fraudvae score`, run on the
executors over pandas batches (`mapInPandas`), the model loaded once per executor Python process.

pyspark is an optional extra (``pip install "fraudvae[spark]"``); this module imports it lazily.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from fraudvae.errors import ConfigError, DataError
from fraudvae.schema import OUTPUT_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from fraudvae.detector import FraudVAE


@lru_cache(maxsize=4)
def _model(path: str, version: str, device: str) -> FraudVAE:
    """One loaded model per executor process (Spark reuses its Python workers across tasks)."""
    from fraudvae.detector import FraudVAE

    det = FraudVAE.load(path, device=device)
    if det.version_ != version:  # the directory changed under the job: refuse to mix models
        raise DataError(f"model at {path!r} is version {det.version_}, the job was planned with {version}")
    return det


def score(df: DataFrame, model_dir: str | os.PathLike, *, ship: bool = False, device: str = "cpu") -> DataFrame:
    """`df` with ``score`` (double, negative ELBO in nats), ``flag`` (boolean, score > threshold),
    ``p_value`` (double) and ``top_features`` (string, ";"-joined) appended, row for row.

    `model_dir` must be readable at the same path on every executor (a shared or mounted
    filesystem), or pass ``ship=True`` to send it with the job (``SparkContext.addFile``). The model's
    checksums are verified on the driver when the job is planned and again where it is loaded.
    Raises `ConfigError` when `df` already has an output column and `SchemaError` (on the driver)
    when it lacks a column the model needs."""
    from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType

    from fraudvae.detector import FraudVAE

    path = Path(model_dir).resolve()
    det = FraudVAE.load(path, device="cpu")  # fail fast on the driver: a bad directory, a bad schema
    if det.history_ is not None:
        raise ConfigError(f"model {path} reads the history of entity columns ({', '.join(det.history_.spec.entities)}):"
                          " fraudvae.spark does not compute history features yet; score with `fraudvae score`")
    clash = [c for c in OUTPUT_COLUMNS if c in df.columns]
    if clash:
        raise ConfigError(f"the DataFrame already has column(s) {', '.join(map(repr, clash))}: "
                          "rename them before scoring")
    det.schema_.check(df.columns)
    version = det.version_
    sc = df.sparkSession.sparkContext
    if (sc.master or "").startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        # local mode: the executors are this machine's, and the driver's interpreter is the one with
        # fraudvae installed (pyspark's default is whatever `python3` is first on PATH)
        sc.pythonExec = sys.executable
    if ship:
        sc.addFile(str(path), recursive=True)
    location, name = str(path), path.name
    out_schema = StructType([*df.schema.fields, StructField("score", DoubleType(), False),
                             StructField("flag", BooleanType(), False), StructField("p_value", DoubleType(), False),
                             StructField("top_features", StringType(), True)])

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        where = location
        if ship:
            from pyspark import SparkFiles

            where = SparkFiles.get(name)
        model = _model(where, version, device)
        for batch in batches:
            scored = model.score(batch)
            out = batch.copy()
            out["score"] = scored["score"].to_numpy()
            out["flag"] = scored["flag"].to_numpy()
            out["p_value"] = scored["p_value"].to_numpy()
            out["top_features"] = scored["top_features"].to_numpy() if "top_features" in scored else None
            yield out

    return df.mapInPandas(score_batches, schema=out_schema)
