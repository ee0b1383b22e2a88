"""`FraudVAE`: the estimator users call (pandas in, pandas out). Scores are negative ELBOs in nats,
higher = more suspicious (`fraudvae.scoring` computes them)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fraudvae import __version__, persist
from fraudvae.device import resolve_device
from fraudvae.encoded import Encoded
from fraudvae.entities import EntityHistory
from fraudvae.errors import ConfigError, DataError, ModelFileError, NotFittedError
from fraudvae.fitted import FittedState
from fraudvae.history import HistoryState
from fraudvae.history.spec import RISK_MEASURES
from fraudvae.inverse import to_columns
from fraudvae.model import VAE
from fraudvae.preprocess import OTHER
from fraudvae.reasons import Reason, explain_rows
from fraudvae.scoring import SCORE_BATCH, Scorer, Scores
from fraudvae.threshold import calibrate

log = logging.getLogger(__name__)


class FraudVAE(EntityHistory):
    """A variational autoencoder trained on normal transactions; scores rows by negative ELBO.

    Parameters
    ----------
    hidden, latent_dim : network sizes; ``None`` derives them from the number of input features.
    members : independent VAEs trained together; the score is the mean of their negative ELBOs.
    beta : weight of the KL term in training (the score always uses the plain ELBO).
    epochs, batch_size, lr, patience : training; ``None`` sizes are derived from the row count.
    prior_components : 0 for the standard normal prior on the latent space; C > 0 for a learned
        mixture of C Gaussians (a Gaussian-mixture VAE: clustered normal data leaves fewer empty
        regions of the prior where an anomaly costs little). The score stays the negative ELBO.
    validation : which normal rows are held out for early stopping and the threshold: ``random`` a
        seeded random share (the default: the network learns from the latest rows too, and the
        threshold is calibrated on rows exchangeable with the training ones), ``tail`` the last ones
        in file order (an out-of-time threshold), ``interleaved`` rows evenly spread over the file.
    validation_fraction : share of normal rows held out.
    target_fpr, alert_rate : how the threshold is set on validation normals (see `calibrate`).
    seed, device : reproducibility and where to run (``auto`` picks CUDA when available).
    label_column, id_column, drop, categorical : schema options (see `fraudvae.schema`).
    time_columns : columns to read as date-times (others are recognised by their values, or as epoch
        seconds by a time-like name); the model sees each one's hour of day and day of week.
    label_check : refuse a 0/1 column named like a fraud label when no ``label_column`` is given
        (training on the frauds with the label as an input is never what was meant).
    point_mass_share : when set (say 0.25), a numeric column whose commonest value holds at least
        this share of training rows gets a point mass (an "at that value" indicator, the Gaussian for
        the other values); off by default (see bench/RESULTS.md for what it changes).
    top_k : how many contributing columns `score` reports per row.
    entity_columns, amount_column, windows, usual_window : entities (card, customer, terminal) whose strictly
        earlier transactions give each row features (`fraudvae.history`; needs a time column), the amount
        compared with their usual (default: found by name), the windows (default 1h, 1d, 7d, 30d), the
        usual's window (default 90d, or the longest window if longer).
    numeric : integer columns named like identifiers to model as numbers all the same.
    label_delay, label_time_column : confirmed frauds as history (`fraudvae.history.risk`), a label
        known ``label_delay`` (``"7d"``) after its row or at the time in ``label_time_column``.
    risk_measures : what each entity's confirmed frauds give a row: ``"share"`` (of its labels known,
        the default), ``"frauds"`` (their number), or both.
    """

    def __init__(self, *, hidden: tuple[int, ...] | None = None, latent_dim: int | None = None, members: int = 1,
                 beta: float = 1.0, epochs: int | None = None, batch_size: int | None = None,
                 lr: float | None = None, patience: int = 10, validation_fraction: float = 0.3,
                 validation: str = "random", prior_components: int = 0,
                 target_fpr: float | None = 0.01, alert_rate: float | None = None, seed: int = 0,
                 device: str = "auto", label_column: str | None = None, id_column: str | None = None,
                 drop: tuple[str, ...] = (), categorical: tuple[str, ...] = (),
                 time_columns: tuple[str, ...] = (), label_check: bool = True, min_category_count: int = 5,
                 point_mass_share: float | None = None, top_k: int = 3, entity_columns: tuple[str, ...] = (),
                 amount_column: str | None = None, windows: tuple[str, ...] | None = None,
                 usual_window: str | None = None, numeric: tuple[str, ...] = (), label_delay: str | None = None,
                 label_time_column: str | None = None, risk_measures: tuple[str, ...] = RISK_MEASURES) -> None:
        self.hidden, self.latent_dim, self.members, self.beta = hidden, latent_dim, members, beta
        self.epochs, self.batch_size, self.lr, self.patience = epochs, batch_size, lr, patience
        self.validation_fraction = validation_fraction
        self.validation = validation
        self.prior_components = prior_components
        self.target_fpr = target_fpr
        self.alert_rate = alert_rate
        self.seed = seed
        self.device = device
        self.label_column = label_column
        self.id_column = id_column
        self.drop = tuple(drop)
        self.categorical = tuple(categorical)
        self.time_columns = tuple(time_columns)
        self.label_check = label_check
        self.min_category_count = min_category_count
        self.point_mass_share = point_mass_share
        self.top_k = top_k
        self.entity_columns = tuple(entity_columns)
        self.amount_column = amount_column
        self.windows, self.usual_window = None if windows is None else tuple(windows), usual_window
        self.numeric, self.risk_measures = tuple(numeric), tuple(risk_measures)
        self.label_delay, self.label_time_column = label_delay, label_time_column

    # ------------------------------------------------------------------ fitting
    def fit(self, df: pd.DataFrame, progress: Callable[[int, int, dict], None] | None = None,
            history: pd.DataFrame | None = None) -> FraudVAE:
        """Learn normal rows of `df` (rows labelled fraud are kept out), then set the threshold; with
        entity columns, earlier transactions `history` warm the entities' history first. Returns self."""
        from fraudvae.fitting import fit_state  # training (and its distributed helpers) is loaded here only

        fitted = fit_state(df, self.get_params(), progress, history)
        self.model_, self.device_, self.state_, scorer, self.history_ = fitted
        self.scorer_ = (self.model_, self.state_.preprocessor, scorer)  # what `_scorer` would make again
        self.version_ = persist.content_version(self._files())
        return self

    def calibrate(self, df: pd.DataFrame | None = None, target_fpr: float | None = None,
                  alert_rate: float | None = None, lineage: dict | None = None,
                  scores: np.ndarray | None = None) -> FraudVAE:
        """Reset the threshold from normal rows `df` the model did not train on, or from `scores`
        already computed for such rows (default: the stored validation scores). The weights stay;
        the version changes. `lineage` (say, the data's digest) is recorded in the model with the
        parent's version. Returns self."""
        self.check_fitted()
        if df is not None and scores is not None:
            raise ConfigError("give the rows or their scores, not both")
        if scores is None:
            scores = self.score_samples(df) if df is not None else np.asarray(self.threshold_.validation_scores)
        threshold = calibrate(scores, target_fpr, alert_rate)
        parent = {"parent_version": self.version_, **(lineage or {})}
        self.state_ = self.state_.with_threshold(threshold, parent)
        self.version_ = persist.content_version(self._files())  # another threshold, another model
        return self

    # ------------------------------------------------------------------ inference
    def score_samples(self, df: pd.DataFrame) -> np.ndarray:
        """(n,) scores only (negative ELBO in nats, higher = more suspicious)."""
        terms, kl = self._scorer().terms(self._encode(df))
        return terms.sum(1) + kl

    def score_samples_(self, df: pd.DataFrame) -> np.ndarray:
        """Deprecated name of `score_samples` (a method, not a fitted attribute)."""
        warnings.warn("FraudVAE.score_samples_ is renamed score_samples", DeprecationWarning, stacklevel=2)
        return self.score_samples(df)

    def score(self, df: pd.DataFrame) -> pd.DataFrame:
        """One row per input row, in order: ``score`` (negative ELBO, nats; higher = more
        suspicious), ``flag`` (score > threshold), ``p_value`` (conformal, against validation
        normals), ``top_features`` (the `top_k` columns furthest above their typical contribution, most
        unusual first, joined by ";") and the
        id column when the model has one."""
        scored = self.score_encoded(self._encode(df))
        out = pd.DataFrame(index=df.index)
        if self.schema_.id_column and self.schema_.id_column in df.columns:
            out[self.schema_.id_column] = df[self.schema_.id_column]
        out["score"] = scored.score
        out["flag"] = scored.flag
        out["p_value"] = scored.p_value
        if self.top_k:
            out["top_features"] = scored.joined_top_features()
        return out

    def encode_columns(self, columns: Mapping[str, list], n: int) -> Encoded:
        """Check and encode `n` rows given column-wise (column name -> list of n JSON-like values;
        see `Preprocessor.transform_columns`): the first half of scoring without pandas, apart so
        a server can encode requests and score many at once."""
        self.check_fitted()
        self.check_history_columns(columns, "encoding JSON columns")
        return self.preprocessor_.transform_columns(columns, n)

    def score_encoded(self, encoded: Encoded) -> Scores:
        """Scores, flags, p-values and top features of encoded rows (the second half)."""
        return self._scorer().scores(encoded, self.threshold_, self.baseline_, self.top_k)

    def explain(self, df: pd.DataFrame, reasons: bool = False) -> pd.DataFrame:
        """Per-column contributions (nats) to each row's score, plus the ``latent`` KL term.

        Columns sum to the score (``DataFrame.sum`` skips NaN). NaN marks a value that is missing
        and contributes nothing (training had no gaps in its column, so a gap says nothing); a
        column whose gaps the model learned shows what the gap itself costs. Compare with
        `baseline_` (the validation median) to see what is unusual.

        With ``reasons``, instead one column ``reasons``: for each row, its `top_k` most unusual
        columns with the value and what the model expected there, as a reviewer reads it
        ("amount 4,800 (typical 20 to 90); ..."; see `reason_codes` for the same as data)."""
        if reasons:
            texts = ["; ".join(r.text() for r in row) for row in self.reason_codes(df)]
            return pd.DataFrame({"reasons": texts}, index=df.index)
        self.check_fitted()
        enc, scorer = self._encode(df), self._scorer()
        terms, kl = scorer.terms(enc)
        by_column = np.where(scorer.unobserved(enc), np.nan, scorer.by_column(terms))
        out = pd.DataFrame(by_column, columns=self.schema_.names(), index=df.index)
        out["latent"] = kl
        return out

    def reason_codes(self, rows: pd.DataFrame | Mapping[str, list]) -> list[list[Reason]]:
        """For each row (a frame, or columns of JSON values as `encode_columns` takes them), a
        `Reason` for each of its `top_k` most unusual columns (those `score` names in
        ``top_features``, most unusual first): the value, and what the model expected for it (a
        number's typical range in original units, the likeliest categories)."""
        self.check_fitted()
        if isinstance(rows, pd.DataFrame):
            rows = self.with_history(rows)
            enc, typed = self.preprocessor_.transform(rows), False
        else:
            self.check_history_columns(rows, "reason codes from JSON columns")
            enc, typed = self.encode_columns(rows, len(next(iter(rows.values()), []))), True
        scorer = self._scorer()
        terms, _ = scorer.terms(enc)
        columns, excess = scorer.ranked(scorer.unobserved(enc), scorer.by_column(terms), self.baseline_,
                                        self.top_k or 3)
        history = frozenset(self.history_.spec.names()) if self.history_ is not None else frozenset()
        return explain_rows(self.preprocessor_, enc, rows, typed, columns, excess, scorer.expectations, history)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """(n,) bool: score > threshold."""
        return self.score_samples(df) > self.threshold_.value

    def latent(self, df: pd.DataFrame) -> np.ndarray:
        """(n, latent_dim) posterior means (of the first ensemble member: members' latent spaces
        are not aligned with one another)."""
        self.check_fitted()
        enc = self._encode(df)
        numeric, _, binary, categorical = enc.to_tensors(self.device_)
        with torch.no_grad():
            x = self.model_.encode_input(numeric, binary, categorical)
            return self.model_.encode(x)[0][0].cpu().numpy()

    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        """`n` synthetic rows drawn from the model (z from the prior, then every column from the
        decoder's likelihood), in the schema's columns and original units; reproducible with
        `seed`. Realistic test data without copying rows, but not a privacy guarantee: a model can
        memorise rare training rows."""
        self.check_fitted()
        if n < 1:
            raise ConfigError(f"n={n!r}: the number of rows to sample must be at least 1")
        if self.model_.training:
            self.model_.eval()
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        parts = []
        for i in range(0, n, SCORE_BATCH):  # bounded memory, same rows whatever the batch size
            drawn = self.model_.sample(min(SCORE_BATCH, n - i), generator, never=OTHER)
            parts.append([t.cpu().numpy() for t in drawn])
        return to_columns(self.preprocessor_, *(np.concatenate(p) for p in zip(*parts, strict=True)))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the model directory (atomically). Returns its path."""
        self.check_fitted()
        self.version_ = persist.write_model(Path(path), self._files())
        return Path(path).resolve()

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> FraudVAE:
        """Read a model directory written by `save`, verifying its checksums. Never unpickles."""
        path = Path(path)
        meta, weights, version = persist.read_model(path)
        try:
            params: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["params"].items()}
            # a model saved before an option existed was fitted as the option's old behaviour: say so,
            # rather than report today's default
            params.setdefault("prior_components", meta["model_config"].get("prior_components", 0))
            det = cls(**params)
            det.state_ = FittedState.from_dict(meta)
            if "risk_measures" not in params and (spec := det.state_.history) is not None and spec.label_column:
                det.risk_measures = spec.risk_measures  # saved before the option: what its labels give, say so
            model = VAE(det.state_.model_config)
            model.load_state_dict(weights)
        except KeyError as e:  # a field the format requires is not there
            versions = meta.get("versions")
            writer = versions.get("fraudvae") if isinstance(versions, dict) else None
            writer = writer or "of unknown version"
            raise ModelFileError(f"model directory {str(path)!r} cannot be loaded: model.json has no field "
                                 f"{e.args[0]!r}, which this version ({__version__}) needs; it was written by "
                                 f"fraudvae {writer}. Fit the model again, or load it with the version that "
                                 f"wrote it") from None
        except (ValueError, TypeError, RuntimeError) as e:
            raise ModelFileError(f"model directory {str(path)!r} cannot be loaded: {e}") from None
        det.history_ = None
        if det.state_.history is not None:
            try:
                det.history_ = HistoryState.from_json(persist.read_history(path), det.state_.history)
            except (ValueError, KeyError, TypeError) as e:
                raise ModelFileError(f"model directory {str(path)!r}: its saved history cannot be loaded: "
                                     f"{e}") from None
        det.version_ = version
        det.device_ = resolve_device(device)
        det.model_ = model.to(det.device_).eval()
        return det

    def _files(self) -> dict[str, bytes]:
        """The model directory's files as bytes: what `save` writes, and what the version digests."""
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()}
        meta = {"params": params, **self.state_.to_dict(), "versions": persist.library_versions()}
        history = self.history_.to_json() if self.history_ is not None else None
        return persist.model_files(meta, self.model_.state_dict(), history)

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    # ------------------------------------------------------------------ fitted state
    # read-only views of the fitted state (`FittedState`), under scikit-learn's fitted-attribute names
    schema_ = property(lambda self: self._state().schema, doc="the columns and their roles (`Schema`)")
    preprocessor_ = property(lambda self: self._state().preprocessor, doc="fitted preprocessing")
    model_config_ = property(lambda self: self._state().model_config, doc="the network's shape")
    train_config_ = property(lambda self: self._state().train_config, doc="how it was trained")
    threshold_ = property(lambda self: self._state().threshold, doc="the flagging threshold (`Threshold`)")
    baseline_ = property(lambda self: self._state().baseline, doc="each column's median validation contribution")
    metrics_ = property(lambda self: self._state().metrics, doc="what fitting measured")

    def check_fitted(self) -> None:
        """Raise `NotFittedError` unless the model is fitted (or loaded)."""
        self._state()

    def _state(self) -> FittedState:
        state = self.__dict__.get("state_")
        if state is None:
            raise NotFittedError("this FraudVAE is not fitted yet: call fit() or FraudVAE.load() first")
        return state

    # ------------------------------------------------------------------ internals
    def _encode(self, df: pd.DataFrame) -> Encoded:
        self.check_fitted()
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        return self.preprocessor_.transform(self.with_history(df))

    def _scorer(self) -> Scorer:
        """The scoring form of the network (a float64 copy), made once per fitted model."""
        state = self._state()
        cached = self.__dict__.get("scorer_")
        if cached is None or cached[0] is not self.model_ or cached[1] is not state.preprocessor:
            scorer = Scorer(self.model_, state.schema.names(), state.preprocessor.column_assignment(), self.device_)
            self.scorer_ = cached = (self.model_, state.preprocessor, scorer)
        return cached[2]

    def describe(self) -> dict:
        """A JSON-ready summary: schema, threshold, metrics, configs."""
        state = self._state().to_dict()
        t = self.threshold_
        return {"schema": state["schema"], "threshold": t.value, "threshold_method": t.method,
                "threshold_target": t.target, "validation_quantiles": state["validation_quantiles"],
                "model_config": state["model_config"], "train_config": state["train_config"],
                "metrics": {k: v for k, v in self.metrics_.items() if k != "history"}}
