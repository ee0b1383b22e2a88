"""Inference: the negative ELBO of encoded rows, per feature and per column, and what a score says
(flag, p-value, the columns most unusual). Imports neither pandas nor the training loop.

Score direction, once for all: a row's score is its negative ELBO in nats (reconstruction negative
log-likelihood plus KL divergence, evaluated at the posterior mean), and higher = more suspicious.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import numpy as np
import torch

from fraudvae.encoded import Encoded
from fraudvae.model import VAE, posterior_mean_passes, predictive
from fraudvae.reasons import Expectations
from fraudvae.threshold import Threshold

SCORE_BATCH = 16384  # rows per forward pass


@dataclass(frozen=True)
class Scores:
    """What scoring gives for n rows, as arrays (see `FraudVAE.score` for their meaning)."""

    score: np.ndarray  # (n,) float64
    flag: np.ndarray  # (n,) bool, score > threshold
    p_value: np.ndarray  # (n,) float64
    top_features: np.ndarray  # (n, top_k) column names, most unusual first
    contributions: np.ndarray  # (n, n_columns) nats per column (NaN: a gap that says nothing), for monitoring

    def __len__(self) -> int:
        return len(self.score)

    @staticmethod
    def concat(parts: list[Scores]) -> Scores:
        """Rows of several results in order."""
        return Scores(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Scores)))

    def take(self, idx: slice) -> Scores:
        return Scores(self.score[idx], self.flag[idx], self.p_value[idx], self.top_features[idx],
                      self.contributions[idx])


class Scorer:
    """A trained network prepared for scoring, with the layout of its columns.

    The network runs in float64: float32 sums come out differently with the batch's size (the
    kernels block and vectorise by shape), which moves a row's score in its 7th digit with the rows
    scored beside it; in float64 those differences sit far below 1e-9 relative, so a row scores the
    same alone, in a file, in a chunk or in a server's batch."""

    def __init__(self, model: VAE, columns: list[str], assignment: np.ndarray, device: torch.device) -> None:
        self.model = copy.deepcopy(model).double().eval()
        self.columns = np.array(columns, dtype=object)
        self.assignment = assignment  # (n_terms, n_columns) 0/1: the column each term belongs to
        self.device = device

    @torch.inference_mode()
    def terms(self, enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature NLL (n, n_terms) and KL (n,) at the posterior mean, averaged over ensemble
        members, float64."""
        terms, kls = [], []
        for nll, kl in posterior_mean_passes(self.model, enc.to_tensors(self.device), SCORE_BATCH):
            terms.append(nll.mean(0).cpu().numpy())  # (members, n, n_terms) -> (n, n_terms)
            kls.append(kl.mean(0).cpu().numpy())
        if not terms:
            return np.zeros((0, self.model.config.n_terms)), np.zeros(0)
        return np.concatenate(terms), np.concatenate(kls)

    @torch.inference_mode()
    def expectations(self, enc: Encoded) -> Expectations:
        """What the decoder expects of each row (`reasons.Expectations`), float64."""
        numeric, _, binary, categorical = enc.to_tensors(self.device)
        parts = [predictive(self.model, (numeric[i: i + SCORE_BATCH], None, binary[i: i + SCORE_BATCH],
                                         categorical[i: i + SCORE_BATCH]))
                 for i in range(0, max(len(enc), 1), SCORE_BATCH)]

        def joined(arrays: list[torch.Tensor]) -> np.ndarray:
            return np.concatenate([a.cpu().numpy() for a in arrays])

        return Expectations(joined([p.mean for p in parts]), joined([p.sd for p in parts]),
                            joined([p.p_binary for p in parts]),
                            tuple(joined([p.p_categories[j] for p in parts])
                                  for j in range(len(parts[0].p_categories))))

    def by_column(self, terms: np.ndarray) -> np.ndarray:
        """(n, n_terms) -> (n, n_columns): a column's terms summed (value and missing indicator)."""
        return terms @ self.assignment

    def unobserved(self, enc: Encoded) -> np.ndarray:
        """(n, n_columns) bool: every term of the column masked (a gap that says nothing)."""
        return (enc.observed.astype(np.float64) @ self.assignment) == 0

    def ranked(self, unobserved: np.ndarray, by_column: np.ndarray, baseline: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's `k` columns furthest above their `baseline`, most unusual first (n, k), and
        those excesses in nats (n, k). A column whose value is missing (and says nothing) is never
        among them unless nothing else is left (its excess is then -inf)."""
        excess = np.where(unobserved, -np.inf, by_column - baseline)
        top = np.argsort(-excess, axis=1, kind="stable")[:, :k]
        return self.columns[top], np.take_along_axis(excess, top, axis=1)

    def scores(self, enc: Encoded, threshold: Threshold, baseline: np.ndarray, top_k: int) -> Scores:
        """Scores, flags, p-values and the `top_k` columns furthest above their `baseline`."""
        terms, kl = self.terms(enc)
        scores = terms.sum(1) + kl
        unobserved, by_column = self.unobserved(enc), self.by_column(terms)
        top, _ = self.ranked(unobserved, by_column, baseline, top_k)
        return Scores(scores, scores > threshold.value, threshold.p_values(scores), top,
                      np.where(unobserved, np.nan, by_column))
