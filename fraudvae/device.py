"""Where the network runs: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``."""

from __future__ import annotations

import torch

from fraudvae.errors import ConfigError


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for but CUDA is not available (use auto or cpu)")
    return torch.device(device)
