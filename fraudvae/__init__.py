"""fraudvae: fraud and anomaly detection for tabular transactions with a variational autoencoder.

Scores are negative ELBOs in nats: higher = more suspicious.
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy imports below give, for type checkers
    from fraudvae.detector import FraudVAE  # noqa: F401
    from fraudvae.encoded import Encoded  # noqa: F401
    from fraudvae.errors import (  # noqa: F401
        ConfigError,
        DataError,
        FraudVAEError,
        ModelFileError,
        NotFittedError,
        SchemaError,
        StateStoreError,
    )
    from fraudvae.example import example_transactions  # noqa: F401
    from fraudvae.history.labels import LabelOutcome, read_labels  # noqa: F401
    from fraudvae.history.store import StateStore, open_state_store  # noqa: F401
    from fraudvae.io import iter_table, read_table  # noqa: F401
    from fraudvae.monitor import MonitorConfig, window_stats  # noqa: F401
    from fraudvae.reasons import Reason  # noqa: F401
    from fraudvae.schema import to_binary_label  # noqa: F401
    from fraudvae.scoring import Scores  # noqa: F401
    from fraudvae.threshold import Threshold, calibrate  # noqa: F401

# the public names are imported on first use: `fraudvae --help` must not wait for torch
_EXPORTS = {
    "FraudVAE": "fraudvae.detector", "Scores": "fraudvae.scoring", "Encoded": "fraudvae.encoded",
    "FraudVAEError": "fraudvae.errors", "ConfigError": "fraudvae.errors", "DataError": "fraudvae.errors",
    "SchemaError": "fraudvae.errors", "ModelFileError": "fraudvae.errors", "NotFittedError": "fraudvae.errors",
    "Threshold": "fraudvae.threshold", "MonitorConfig": "fraudvae.monitor", "window_stats": "fraudvae.monitor",
    "calibrate": "fraudvae.threshold", "example_transactions": "fraudvae.example",
    "read_table": "fraudvae.io", "iter_table": "fraudvae.io", "to_binary_label": "fraudvae.schema",
    "Reason": "fraudvae.reasons", "StateStoreError": "fraudvae.errors",
    "StateStore": "fraudvae.history.store", "open_state_store": "fraudvae.history.store",
    "read_labels": "fraudvae.history.labels", "LabelOutcome": "fraudvae.history.labels",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fraudvae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
