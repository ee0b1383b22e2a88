"""`TrainConfig`: how to train, apart from the training loop (a saved model records it, and
loading one must not import the loop)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from fraudvae.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``None`` sizes are derived from the number of training rows."""

    epochs: int | None = None  # at most this many; early stopping usually ends sooner
    batch_size: int | None = None
    lr: float | None = None  # None: 2e-3 up to batch 128, then scaled by sqrt(batch / 128), at most 4e-3
    weight_decay: float = 1e-5
    beta: float = 1.0  # weight of the KL term
    warmup_epochs: int = 10  # the KL weight rises linearly from 0 to beta over these epochs
    patience: int = 10  # epochs without a better validation loss before stopping
    target_steps: int = 3000  # optimizer steps the derived epoch count aims at
    variance_prior_rows: float = 1000.0  # weight of the marginal variance in the decoder-variance fit
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        checks = [("epochs", self.epochs, lambda v: v is None or v >= 1, ">= 1"),
                  ("batch_size", self.batch_size, lambda v: v is None or v >= 1, ">= 1"),
                  ("lr", self.lr, lambda v: v is None or 0 < v < 1, "in (0, 1)"),
                  ("beta", self.beta, lambda v: 0 < v <= 100, "in (0, 100]"),
                  ("warmup_epochs", self.warmup_epochs, lambda v: v >= 0, ">= 0"),
                  ("patience", self.patience, lambda v: v >= 1, ">= 1"),
                  ("variance_prior_rows", self.variance_prior_rows, lambda v: v >= 0, ">= 0"),
                  ("device", self.device, lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"),
                   "auto, cpu or cuda")]
        for name, value, ok, allowed in checks:
            if not ok(value):
                raise ConfigError(f"{name}={value!r} is not allowed (must be {allowed})")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**d)
