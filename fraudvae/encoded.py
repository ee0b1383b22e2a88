"""`Encoded`: model inputs for n rows as numpy arrays, what preprocessing gives and the network takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from fraudvae.model import Tensors


@dataclass(frozen=True)
class Encoded:
    """Model inputs for n rows. ``binary`` holds the 0/1 features in `Preprocessor.flag_layout`'s
    order (binary columns, missing indicators, point-mass indicators); ``categorical`` holds
    categorical columns, then each time column's hour of day and day of week."""

    numeric: np.ndarray  # (n, n_numeric) float32, scaled
    observed: np.ndarray  # (n, n_terms) float32: 0 where a term's value was imputed (not evidence)
    binary: np.ndarray  # (n, n_binary) float32 in [0, 1]
    categorical: np.ndarray  # (n, n_categorical) int64 indices

    def __len__(self) -> int:
        return len(self.numeric)

    @property
    def numeric_observed(self) -> np.ndarray:
        """(n, n_numeric): the numeric terms of `observed`."""
        return self.observed[:, : self.numeric.shape[1]]

    def take(self, idx: np.ndarray | slice) -> Encoded:
        return Encoded(self.numeric[idx], self.observed[idx], self.binary[idx], self.categorical[idx])

    @staticmethod
    def concat(parts: Sequence[Encoded]) -> Encoded:
        """Rows of several encodings (of one preprocessor) in order: how requests are batched."""
        if len(parts) == 1:
            return parts[0]
        return Encoded(*(np.concatenate([getattr(p, f) for p in parts])
                         for f in ("numeric", "observed", "binary", "categorical")))

    def to_tensors(self, device: torch.device) -> Tensors:
        """Model inputs on `device` (no copy on the CPU); the observed-mask is None when no value was
        imputed (saves work)."""
        import torch

        observed = None if self.observed.all() else torch.from_numpy(self.observed).to(device)
        return (torch.from_numpy(self.numeric).to(device), observed,
                torch.from_numpy(self.binary).to(device), torch.from_numpy(self.categorical).to(device))
