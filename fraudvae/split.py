"""Which normal rows train the network and which are held out (for early stopping and the threshold)."""

from __future__ import annotations

import numpy as np

from fraudvae.errors import ConfigError

KINDS = ("tail", "interleaved", "random")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"validation={kind!r} is not allowed (must be 'tail', 'interleaved' or 'random')")


def validation_split(n: int, fraction: float, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training positions, validation positions) among `n` rows, each in file order: a `fraction`
    of them (at least 2) held out, ``tail`` the last ones (out-of-time, as drift would have it),
    ``interleaved`` evenly spread over the file (every period in both), ``random`` a seeded draw."""
    check_kind(kind)
    n_val = max(2, int(round(fraction * n)))
    if kind == "tail":
        order = np.arange(n)[::-1]
    elif kind == "interleaved":
        i = np.arange(n)
        pick = np.floor((i + 1) * n_val / n) > np.floor(i * n_val / n)
        order = np.r_[np.flatnonzero(pick), np.flatnonzero(~pick)]
    else:
        order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
