"""Scoring a Spark DataFrame with a saved model: the same scorer as `fraudvae score`, run on the
executors over pandas batches (`mapInPandas`), the model loaded once per executor Python process.

pyspark is an optional extra (``pip install "fraudvae[spark]"``); this module imports it lazily.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraudvae.errors import ConfigError, DataError
from fraudvae.schema import OUTPUT_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from fraudvae.detector import FraudVAE
    from fraudvae.history import HistorySpec


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
    clash = [c for c in OUTPUT_COLUMNS if c in df.columns]
    if clash:
        raise ConfigError(f"the DataFrame already has column(s) {', '.join(map(repr, clash))}: "
                          "rename them before scoring")
    sc = df.sparkSession.sparkContext
    if (sc.master or "").startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        # local mode: the executors are this machine's, and the driver's interpreter is the one with
        # fraudvae installed (pyspark's default is whatever `python3` is first on PATH)
        sc.pythonExec = sys.executable
    original = df
    history = det.history_
    if history is not None:  # the history features first, each entity's rows together, in time order
        from fraudvae.errors import SchemaError

        spec = history.spec
        missing = [c for c in spec.columns() if c not in df.columns]
        if missing:
            raise SchemaError(f"missing column(s) the model's history needs: {', '.join(map(repr, missing))}",
                              column=missing[0])
        _check_continues(df, spec, history.end)
        df = _with_history(df, str(path), det.version_, ship)
    det.schema_.check(df.columns)
    version = det.version_
    if ship:
        sc.addFile(str(path), recursive=True)
    location, name = str(path), path.name
    columns = list(original.columns)  # a plain list: the closure below is shipped to the executors
    out_schema = StructType([*original.schema.fields, StructField("score", DoubleType(), False),
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
            out = batch[columns].copy()
            out["score"] = scored["score"].to_numpy()
            out["flag"] = scored["flag"].to_numpy()
            out["p_value"] = scored["p_value"].to_numpy()
            out["top_features"] = scored["top_features"].to_numpy() if "top_features" in scored else None
            yield out

    return df.mapInPandas(score_batches, schema=out_schema)


ROW = "__fraudvae_row"


def _with_history(df: DataFrame, location: str, version: str, ship: bool) -> DataFrame:
    """`df` with the model's history features: for each entity column, its rows grouped by entity and
    taken in time order from the model's saved state (`fraudvae.history.derive`, as `fraudvae score`
    does over a whole file: entities are independent), joined back on a row number."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StructField, StructType

    det = _model(location, version, "cpu")
    assert det.history_ is not None
    spec = det.history_.spec
    name = Path(location).name
    # numbered once and kept: recomputed (a round-robin repartition is not deterministic), the row
    # numbers of the two sides of the join below could differ
    numbered = df.withColumn(ROW, F.monotonically_increasing_id()).localCheckpoint(eager=True)
    needed = [ROW, *spec.columns(), *(c for c in spec.optional_columns() if c in df.columns)]
    for e in spec.entities:
        one = replace(spec, entities=(e,))
        names = one.names()
        schema = StructType([StructField(ROW, LongType(), False), *(StructField(n, DoubleType(), True) for n in names)])

        numbered = numbered.join(numbered.select(*needed).groupBy(e).applyInPandas(
            _entity_features(e, one, location, version, ship, name), schema=schema), ROW)
    return numbered.drop(ROW)


def _check_continues(df: DataFrame, spec: HistorySpec, end: float) -> None:
    """Refuse a frame most of whose transactions come before the end of the model's history, as
    `fraudvae score` does (`fraudvae.entities.check_continues`): one pass counting them."""
    from pyspark.sql import functions as F

    from fraudvae.entities import check_continues
    from fraudvae.history import seconds

    if not np.isfinite(end):
        return

    def count(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield pd.DataFrame({"rows": [len(batch)], "before": [int(np.count_nonzero(seconds(spec, batch) < end))]})

    got = df.select(spec.time_column).mapInPandas(count, schema="rows long, before long").agg(
        F.sum("rows"), F.sum("before")).first()
    rows, before = (int(got[0] or 0), int(got[1] or 0)) if got is not None else (0, 0)
    check_continues(before, rows, spec.time_column, end)


def _entity_features(e: str, one: HistorySpec, location: str, version: str, ship: bool,
                     name: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The function Spark runs on one entity's rows: its features from the model's saved state."""
    from fraudvae import readers
    from fraudvae.history import HistoryState, derive

    names = one.names()

    def features(rows: pd.DataFrame) -> pd.DataFrame:
        where = location
        if ship:
            from pyspark import SparkFiles

            where = SparkFiles.get(name)
        full = _model(where, version, "cpu").history_
        assert full is not None
        state = HistoryState.empty(one)
        state.start, state.end = full.start, full.end
        for key in {k for k in readers.keys(rows[e], e) if k is not None}:
            known = full.tables[e].get(key)
            if known is not None:
                state.tables[e].put(key, known)
        derived = derive(one, rows, state)
        return pd.DataFrame({ROW: rows[ROW].to_numpy(), **{n: derived[n] for n in names}})

    return features
