"""Fitting: from a frame to a trained network and its `FittedState` (what `FraudVAE.fit` runs).

Rows labelled fraud are kept out of training; the normal rows are split into training and
validation rows (`fraudvae.split`); preprocessing is fitted on the training rows, the network
trained with early stopping on the validation rows, and the threshold calibrated on their scores.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch

from fraudvae.config import TrainConfig
from fraudvae.device import resolve_device
from fraudvae.errors import ConfigError, DataError
from fraudvae.fitted import FittedState
from fraudvae.model import VAE, ModelConfig
from fraudvae.preprocess import PreprocessConfig, Preprocessor
from fraudvae.schema import infer_schema, to_binary_label
from fraudvae.scoring import Scorer
from fraudvae.split import check_kind, validation_split
from fraudvae.threshold import calibrate
from fraudvae.train import train

MIN_NORMAL_ROWS = 20


def fit_state(df: pd.DataFrame, params: dict[str, Any], progress: Callable[[int, int, dict], None] | None = None
              ) -> tuple[VAE, torch.device, FittedState, Scorer]:
    """The trained network, its device, the fitted state and the network's scoring form (made here
    for the validation scores, kept for the estimator), for `FraudVAE` parameters `params` (its
    `get_params()`, documented there)."""
    p = SimpleNamespace(**params)
    if not 0.05 <= p.validation_fraction <= 0.5:
        raise ConfigError(f"validation_fraction={p.validation_fraction!r} is not allowed "
                          "(must be in [0.05, 0.5])")
    check_kind(p.validation)
    if p.point_mass_share is not None and not 0 < p.point_mass_share < 1:
        raise ConfigError(f"point_mass_share={p.point_mass_share!r} is not allowed (must be in (0, 1))")
    if p.min_category_count < 1 or p.top_k < 0 or not 1 <= p.members <= 64:
        raise ConfigError(f"min_category_count={p.min_category_count}, top_k={p.top_k}, "
                          f"members={p.members}: need min_category_count >= 1, top_k >= 0, 1 <= members <= 64")
    if not 0 <= p.prior_components <= 64:
        raise ConfigError(f"prior_components={p.prior_components!r} is not allowed (must be in [0, 64])")
    train_config = TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, beta=p.beta,
                               patience=p.patience, seed=p.seed, device=p.device)
    train_config.validate()
    device = resolve_device(p.device)
    if len(df) == 0:
        raise DataError("the data has no rows")
    schema = infer_schema(df, p.label_column, p.id_column, p.drop, p.categorical, p.time_columns,
                          p.label_check)
    labels = (to_binary_label(df[p.label_column], p.label_column) if p.label_column
              else np.zeros(len(df), dtype=np.int64))
    # the index is kept: errors name a row by it (a file's line number, see `fraudvae.io`)
    normal = df[labels == 0]
    frauds = df[labels == 1]
    if len(normal) < MIN_NORMAL_ROWS:
        raise DataError(f"training needs at least {MIN_NORMAL_ROWS} normal rows, got {len(normal)}")
    train_at, val_at = validation_split(len(normal), p.validation_fraction, p.validation, p.seed)
    train_rows, val_rows = normal.iloc[train_at], normal.iloc[val_at]

    pre = Preprocessor.fit(train_rows, schema, PreprocessConfig(
        min_category_count=p.min_category_count, point_mass_share=p.point_mass_share))
    model_config = ModelConfig.default(pre.n_numeric, len(pre.binary_owners), tuple(pre.cardinalities),
                                       p.hidden, p.latent_dim, p.members, p.prior_components)
    torch.manual_seed(p.seed)
    model = VAE(model_config).to(device)
    val_data = pre.transform(val_rows)
    history = train(model, pre.transform(train_rows), val_data, train_config, progress)
    scorer = Scorer(model, schema.names(), pre.column_assignment(), device)
    val_terms, val_kl = scorer.terms(val_data)
    val_scores = val_terms.sum(1) + val_kl
    metrics = {
        "rows": len(df), "normal_rows": len(normal), "fraud_rows": len(frauds),
        "train_rows": len(train_rows), "validation_rows": len(val_rows),
        "epochs_run": history["epochs_run"], "best_epoch": history["best_epoch"],
        "stop": history["stop"], "batch_size": history["batch_size"],
        # the mean of the scores the threshold comes from (decoder variances re-fitted after
        # early stopping, so it differs from the best epoch's loss in the history)
        "validation_loss": float(val_scores.mean()),
        # a loss that went non-finite (training stopped there) is written as null
        "history": {k: [x if np.isfinite(x) else None for x in history[k]] for k in ("train_loss", "val_loss")},
    }
    threshold = calibrate(val_scores, p.target_fpr, p.alert_rate)
    baseline = np.median(scorer.by_column(val_terms), axis=0)
    state = FittedState(schema, pre, model_config, train_config, threshold, baseline, metrics)
    if len(frauds):
        from fraudvae.metrics import metrics_at

        fraud_terms, fraud_kl = scorer.terms(pre.transform(frauds))
        fraud_scores = fraud_terms.sum(1) + fraud_kl
        y = np.r_[np.zeros(len(val_scores)), np.ones(len(fraud_scores))]
        metrics["at_threshold"] = metrics_at(np.r_[val_scores, fraud_scores], y, threshold.value)
        metrics["at_threshold"]["evaluated_on"] = "validation normals + labelled frauds"
    return model, device, state, scorer
