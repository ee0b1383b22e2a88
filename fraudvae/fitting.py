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
from fraudvae.history import HistoryState
from fraudvae.model import VAE, ModelConfig
from fraudvae.preprocess import PreprocessConfig, Preprocessor
from fraudvae.schema import Column, Schema, infer_schema, to_binary_label
from fraudvae.scoring import Scorer
from fraudvae.split import check_kind, validation_split
from fraudvae.threshold import calibrate
from fraudvae.train import train

MIN_NORMAL_ROWS = 20
HORIZON = 3  # an entity unseen for this many times its longest time constant is forgotten (its sums are ~5% of one)


def fit_state(df: pd.DataFrame, params: dict[str, Any], progress: Callable[[int, int, dict], None] | None = None,
              history: pd.DataFrame | None = None
              ) -> tuple[VAE, torch.device, FittedState, Scorer, HistoryState | None]:
    """The trained network, its device, the fitted state, the network's scoring form (made here
    for the validation scores, kept for the estimator) and, with entity columns, the entities'
    state at the end of `df` (warmed by the earlier transactions `history` first), for `FraudVAE`
    parameters `params` (its `get_params()`, documented there)."""
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
    if history is not None and not p.entity_columns:
        raise ConfigError("earlier transactions (--history) warm the entities' history: they need --entity-column")
    # a history feature can be dropped by its name too ("CUSTOMER_ID: new TERMINAL_ID")
    derived_drop = tuple(d for d in p.drop if d not in df.columns and p.entity_columns and ": " in d)
    if (p.label_delay is not None or p.label_time_column is not None) and not (p.label_column and p.entity_columns):
        raise ConfigError("--label-delay/--label-time-column turn confirmed frauds into each entity's history: they "
                          "need --label-column and --entity-column")
    known_at = (p.label_time_column,) if p.label_time_column and p.label_time_column not in p.drop else ()
    schema = infer_schema(df, p.label_column, p.id_column, (*(d for d in p.drop if d not in derived_drop), *known_at),
                          p.categorical, p.time_columns, p.label_check, p.numeric, p.entity_columns)
    entity_state, warmup = None, np.zeros(len(df), dtype=bool)
    if p.entity_columns:  # each row's features from its entities' earlier rows, frauds among them
        df, schema, entity_state, warmup = with_history(df, schema, p, history, derived_drop)
    labels = (to_binary_label(df[p.label_column], p.label_column) if p.label_column
              else np.zeros(len(df), dtype=np.int64))
    # the index is kept: errors name a row by it (a file's line number, see `fraudvae.io`)
    normal = df[(labels == 0) & ~warmup]
    frauds = df[(labels == 1) & ~warmup]
    if len(normal) < MIN_NORMAL_ROWS:
        raise DataError(f"training needs at least {MIN_NORMAL_ROWS} normal rows, got {len(normal)}")
    train_at, val_at = validation_split(len(normal), p.validation_fraction, p.validation, p.seed)
    train_rows, val_rows = normal.iloc[train_at], normal.iloc[val_at]

    pre = Preprocessor.fit(train_rows, schema, PreprocessConfig(
        min_category_count=p.min_category_count, point_mass_share=p.point_mass_share,
        atoms=tuple(entity_state.spec.atoms()) if entity_state is not None else ()))
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
    if entity_state is not None:
        metrics["history"] = {"entities": entity_state.entities(), "start": entity_state.start,
                              "end": entity_state.end, "warmup_rows": int(warmup.sum())}
    state = FittedState(schema, pre, model_config, train_config, threshold, baseline, metrics,
                        history=None if entity_state is None else entity_state.spec)
    if len(frauds):
        from fraudvae.metrics import metrics_at

        fraud_terms, fraud_kl = scorer.terms(pre.transform(frauds))
        fraud_scores = fraud_terms.sum(1) + fraud_kl
        y = np.r_[np.zeros(len(val_scores)), np.ones(len(fraud_scores))]
        metrics["at_threshold"] = metrics_at(np.r_[val_scores, fraud_scores], y, threshold.value)
        metrics["at_threshold"]["evaluated_on"] = "validation normals + labelled frauds"
    return model, device, state, scorer, entity_state


def usual_window(given: str | None, windows: tuple[float, ...]) -> float:
    """The amount usual's window: as given (at least 7 days: a shorter usual follows a fraud run), else
    `USUAL_WINDOW` or the longest window if longer."""
    from fraudvae.history.spec import LONG_WINDOW, USUAL_WINDOW, parse_window

    if given is None:
        return max(USUAL_WINDOW, *windows)
    try:
        seconds = parse_window(given)
    except ValueError as e:
        raise ConfigError(f"--usual-window: {e}") from None
    if seconds < LONG_WINDOW:
        raise ConfigError(f"--usual-window {given!r}: give 7d or more (a shorter usual follows a run of frauds)")
    return seconds


def label_history(df: pd.DataFrame, p: SimpleNamespace, windows: tuple[float, ...]) -> dict:
    """The label fields of a `HistorySpec` (none without --label-delay or --label-time-column)."""
    from fraudvae import readers as read
    from fraudvae.history import parse_window
    from fraudvae.history.spec import RISK_MEASURES, check_measures, risk_window

    try:
        measures = check_measures(p.risk_measures, "--risk-measures")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if p.label_delay is None and p.label_time_column is None:
        if measures != RISK_MEASURES:
            raise ConfigError("--risk-measures says what confirmed frauds give each entity: it needs --label-delay or "
                              "--label-time-column")
        return {}
    try:
        delay = None if p.label_delay is None else parse_window(p.label_delay)
    except ValueError as e:
        raise ConfigError(f"--label-delay: {e}") from None
    out: dict = {"label_column": p.label_column, "label_delay": delay}
    if p.label_time_column is not None:
        if p.label_time_column not in df.columns:
            raise DataError(f"--label-time-column {p.label_time_column!r} is not a column of the data",
                            column=p.label_time_column)
        unit, fmt = read.time_format(df[p.label_time_column])
        out.update(label_time_column=p.label_time_column, label_time_unit=unit, label_time_format=fmt)
    # the share's window does not depend on the delay (`risk_window`): a file's typical delay is not needed
    return {**out, "label_windows": (risk_window(windows, delay or 0.0, measures),), "risk_measures": measures}


def with_history(df: pd.DataFrame, schema: Schema, p: SimpleNamespace, earlier: pd.DataFrame | None,
                 drop: tuple[str, ...] = ()) -> tuple[pd.DataFrame, Schema, HistoryState, np.ndarray]:
    """`df` with its history features (`fraudvae.history`), the schema with them as ordinary inputs,
    the entities' state at the end of `df` (continued from `earlier` transactions, when given) and
    which rows are the history's warm-up.

    Warm-up: a row less than the longest window after the history's first transaction sees windows
    that are not yet full (its 30-day count covers the days there were), unlike every row scored
    later; trained on, such rows would make a full window look unusual. They build the history but
    are not trained on, up to half of the rows (`--history EARLIER` gives them their windows)."""
    from fraudvae import readers as read
    from fraudvae.entities import check_continues
    from fraudvae.history import (
        HistorySpec,
        HistoryState,
        amount_prior,
        derive,
        find_amount_column,
        parse_window,
        seconds,
    )
    from fraudvae.history.spec import DEFAULT_WINDOWS
    from fraudvae.values import decimal_mark

    times = schema.names("time")
    if p.time_columns:
        time_column = p.time_columns[0]
    elif len(times) == 1:
        time_column = times[0]
    else:
        found = f"found {', '.join(times)}: name one" if times else "none was found"
        raise ConfigError(f"--entity-column needs a time column, to put each entity's transactions in order "
                          f"({found} with --time-column)")
    if time_column not in times:
        raise DataError(f"time column {time_column!r} is not read as date-times", column=time_column)
    amount = p.amount_column
    if amount is not None and amount not in schema.names("numeric"):
        raise DataError(f"--amount-column {amount!r} is not a numeric column the model reads", column=amount)
    if amount is None:
        amount = find_amount_column(schema.names("numeric"))
    try:
        windows = tuple(sorted(parse_window(w) for w in p.windows)) if p.windows else None
    except ValueError as e:
        raise ConfigError(f"--windows: {e}") from None
    usual = usual_window(p.usual_window, windows or DEFAULT_WINDOWS)
    unit, fmt = read.time_format(df[time_column])
    decimal = decimal_mark(df[amount]) if amount else "."
    prior = amount_prior(read.numbers(df[amount], amount, decimal)) if amount else (0.0, 1.0)
    spec = HistorySpec(tuple(p.entity_columns), time_column, amount, windows or DEFAULT_WINDOWS,
                       novelty=(*schema.names("categorical"), *p.entity_columns), amount_prior=prior,
                       time_unit=unit, time_format=fmt, decimal=decimal, usual_window=usual,
                       **label_history(df, p, windows or DEFAULT_WINDOWS))
    clash = [n for n in spec.names() if n in df.columns]
    if clash:
        raise DataError(f"column {clash[0]!r} has the name of a history feature: rename it in the file",
                        column=clash[0])
    state = HistoryState.empty(spec)
    t = seconds(spec, df)  # the training rows' times (the warm-up below reads them too)
    if earlier is not None:  # transactions before the training rows: most of them after its end is the same mistake
        derive(spec, earlier, state)  # as scoring a file the history holds already (`entities.check_continues`)
        check_continues(int(np.count_nonzero(t < state.end)), len(df), time_column, state.end, fitting=True)
    features = derive(spec, df, state, fit_chance=True)  # the share of amounts beyond the usual by chance, here
    spec = state.spec
    state.prune(HORIZON * spec.horizon)  # bounded: entities gone quiet for long start afresh
    cut = min(state.start + max(spec.windows), float(np.median(t)))
    warmup = t < cut
    unknown = [d for d in drop if d not in spec.names()]
    if unknown:
        raise DataError(f"--drop {unknown[0]!r} is neither a column of the data nor a history feature "
                        f"(those are {', '.join(spec.names())})", column=unknown[0])
    columns, dropped, atoms = list(schema.columns), dict(schema.dropped), set(spec.atoms())
    for name, role in spec.features():
        x = features[name]
        if name in drop:
            dropped[name] = "dropped on request"
            continue
        ok = x[np.isfinite(x)]
        if name in atoms and ok.size and np.all(ok == 0):  # nothing out of the ordinary in training: then
            columns.append(Column(name, role))  # anything out of it later is news (a point mass of all rows)
        elif ok.size == 0 or np.all(ok == ok[0]):
            dropped[name] = "history feature without information here (constant)"
        else:
            columns.append(Column(name, role))
    out = df.assign(**{name: features[name] for name in spec.names()})
    return out, Schema(tuple(columns), dropped, schema.label_column, schema.id_column), state, warmup
