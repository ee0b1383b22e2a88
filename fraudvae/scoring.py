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
LOWEST = np.finfo(np.float64).min  # a missing column's place in the ranking (below every finite excess)
PAD_ROWS = 16  # on the CPU a float32 block's rows are a multiple of this (the kernels' widest row tile)


@dataclass(frozen=True)
class Scores:
    """What scoring gives for n rows, as arrays (see `FraudVAE.score` for their meaning)."""

    score: np.ndarray  # (n,) float64
    flag: np.ndarray  # (n,) bool, score > threshold
    p_value: np.ndarray  # (n,) float64
    top_features: np.ndarray  # (n, top_k) column names, most unusual first
    contributions: np.ndarray  # (n, n_columns) nats per column (NaN: a gap that says nothing), for monitoring
    top_index: np.ndarray | None = None  # (n, top_k) positions of `top_features` in the schema's columns

    def __len__(self) -> int:
        return len(self.score)

    @staticmethod
    def concat(parts: list[Scores]) -> Scores:
        """Rows of several results in order."""
        def joined(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        return Scores(*(joined(f.name) for f in fields(Scores)))  # type: ignore[arg-type]

    def take(self, idx: slice) -> Scores:
        return Scores(self.score[idx], self.flag[idx], self.p_value[idx], self.top_features[idx],
                      self.contributions[idx], None if self.top_index is None else self.top_index[idx])

    def joined_top_features(self, sep: str = ";") -> np.ndarray:
        """(n,) each row's `top_features` joined by `sep`: one string built per distinct ranking, not
        per row."""
        n, k = self.top_features.shape
        if k == 0:
            return np.full(n, "", dtype=object)
        if self.top_index is None:
            out = self.top_features[:, 0]
            for j in range(1, k):
                out = out + sep + self.top_features[:, j]
            return out
        width = int(self.top_index.max()) + 1 if n else 1
        code = np.zeros(n, np.int64)
        for j in range(k):
            code = code * width + self.top_index[:, j]
        _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
        texts = np.array([sep.join(self.top_features[r]) for r in first], dtype=object)
        return texts[inverse]


class Scorer:
    """A trained network prepared for scoring, with the layout of its columns.

    A row must score the same alone, in a file, in a chunk or in a server's batch (within 1e-9
    relative). float32 sums can come out differently with the batch's shape (the kernels block and
    vectorise by it), which would move a row's score in its 7th digit with the rows beside it. So the
    network runs in float32 on blocks whose rows are a multiple of `PAD_ROWS` (on CUDA, always
    `SCORE_BATCH` rows: one shape), the last block padded, and the per-feature terms are summed in
    float64 — but only where a probe at construction shows this machine's kernels give a row the
    same bits at every such shape and position (`_same_bits_everywhere`). Where they do not, the
    network runs in float64, where such differences sit far below 1e-9 relative."""

    def __init__(self, model: VAE, columns: list[str], assignment: np.ndarray, device: torch.device) -> None:
        self.model = copy.deepcopy(model).double().eval()  # reason codes' expectations; scoring's fallback
        self.columns = np.array(columns, dtype=object)
        self.assignment = assignment  # (n_terms, n_columns) 0/1: the column each term belongs to
        self.device = device
        fast = copy.deepcopy(model).float().eval()
        self.fast: VAE | None = fast if _same_bits_everywhere(fast, device) else None

    @torch.inference_mode()
    def terms(self, enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature NLL (n, n_terms) and KL (n,) at the posterior mean, averaged over ensemble
        members, float64."""
        if self.fast is None:
            terms, kls = [], []
            for nll, kl in posterior_mean_passes(self.model, enc.to_tensors(self.device), SCORE_BATCH):
                terms.append(nll.mean(0).cpu().numpy())  # (members, n, n_terms) -> (n, n_terms)
                kls.append(kl.mean(0).cpu().numpy())
            if not terms:
                return np.zeros((0, self.model.config.n_terms)), np.zeros(0)
            return np.concatenate(terms), np.concatenate(kls)
        n = len(enc)
        terms_out, kl_out = np.empty((n, self.model.config.n_terms)), np.empty(n)
        for i in range(0, n, SCORE_BATCH):
            b = min(n, i + SCORE_BATCH) - i
            terms_out[i: i + b], kl_out[i: i + b] = _block_pass(self.fast, enc, i, b, block_rows(b, self.device),
                                                                self.device)
        return terms_out, kl_out

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
        if enc.observed.all():  # nothing imputed (the usual case): no column unobserved
            return np.zeros((len(enc), self.assignment.shape[1]), bool)
        # counts of observed terms per column: small integers, exact in float32
        return (enc.observed @ self.assignment.astype(np.float32)) == 0

    def ranked(self, unobserved: np.ndarray, by_column: np.ndarray, baseline: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's `k` columns furthest above their `baseline`, most unusual first (n, k), and
        those excesses in nats (n, k). A column whose value is missing (and says nothing) is never
        among them unless nothing else is left (its excess is then -inf)."""
        index, excess = self.ranked_index(unobserved, by_column, baseline, k)
        return self.columns[index], excess

    def ranked_index(self, unobserved: np.ndarray, by_column: np.ndarray, baseline: np.ndarray,
                     k: int) -> tuple[np.ndarray, np.ndarray]:
        """`ranked` as column positions."""
        excess = by_column - baseline
        gaps = unobserved.any()
        if gaps:
            excess = np.where(unobserved, -np.inf, excess)
        # k passes of argmax (the first of equal values: a stable order) instead of sorting every
        # column of every row; a missing column is below every real excess, a chosen one below that
        work = np.where(unobserved | np.isnan(excess), LOWEST, excess) if gaps else excess.copy()
        k = min(k, work.shape[1])
        top, rows = np.empty((len(work), k), np.intp), np.arange(len(work))
        for j in range(k):
            top[:, j] = chosen = work.argmax(axis=1)
            work[rows, chosen] = -np.inf
        return top, np.take_along_axis(excess, top, axis=1)

    def scores(self, enc: Encoded, threshold: Threshold, baseline: np.ndarray, top_k: int) -> Scores:
        """Scores, flags, p-values and the `top_k` columns furthest above their `baseline`."""
        terms, kl = self.terms(enc)
        scores = terms.sum(1) + kl
        unobserved, by_column = self.unobserved(enc), self.by_column(terms)
        index, _ = self.ranked_index(unobserved, by_column, baseline, top_k)
        return Scores(scores, scores > threshold.value, threshold.p_values(scores), self.columns[index],
                      np.where(unobserved, np.nan, by_column) if unobserved.any() else by_column, index)


def block_rows(rows: int, device: torch.device) -> int:
    """The rows of the float32 block that scores `rows` rows: one shape on CUDA (cuBLAS picks its
    kernels by shape), a multiple of `PAD_ROWS` on the CPU (a single row costs a 16-row pass, not a
    16,384-row one)."""
    if device.type == "cuda":
        return SCORE_BATCH
    return max(PAD_ROWS, -(-rows // PAD_ROWS) * PAD_ROWS)


def _block_pass(model: VAE, enc: Encoded, start: int, rows: int, block: int,
                device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Rows [start, start + rows) of `enc` through the float32 network as one block of `block` rows
    (padded with copies of its first row): per-feature NLL (rows, n_terms) and KL (rows,), float64,
    members averaged."""
    take = slice(start, start + rows) if block == rows else np.r_[np.arange(start, start + rows),
                                                                   np.full(block - rows, start)]
    nll, kl = model(*enc.take(take).to_tensors(device), sample=False)
    return (nll[:, :rows].cpu().numpy().astype(np.float64).mean(0),
            kl[:, :rows].cpu().numpy().astype(np.float64).mean(0))


PROBE_ROWS = 96


@torch.inference_mode()
def _same_bits_everywhere(model: VAE, device: torch.device) -> bool:
    """Whether the float32 network gives each of `PROBE_ROWS` seeded synthetic rows the same bits
    alone, in blocks of other sizes and at other positions (reversed) as in one block: the condition
    for scoring in float32 (checked once per model and device, a few milliseconds)."""
    c = model.config
    rng = np.random.default_rng(0)
    n = PROBE_ROWS
    enc = Encoded(rng.standard_normal((n, c.n_numeric)).astype(np.float32), np.ones((n, c.n_terms), np.float32),
                  (rng.random((n, c.n_binary)) < 0.5).astype(np.float32),
                  np.stack([rng.integers(0, k, n) for k in c.cardinalities], 1) if c.cardinalities
                  else np.zeros((n, 0), np.int64))

    def both(e: Encoded, start: int, rows: int) -> np.ndarray:
        nll, kl = _block_pass(model, e, start, rows, block_rows(rows, device), device)
        return np.concatenate([nll, kl[:, None]], 1)

    want = both(enc, 0, n)
    if not np.array_equal(both(enc.take(np.arange(n)[::-1]), 0, n)[::-1], want):
        return False
    return all(np.array_equal(both(enc, start, rows), want[start: start + rows])
               for start, rows in ((0, 1), (5, 1), (3, 17), (7, 33), (n - 50, 50), (1, 80)))
