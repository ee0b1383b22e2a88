"""fraudvae: fraud and anomaly detection for tabular transactions with a variational autoencoder.

Scores are negative ELBOs in nats: higher = more suspicious.
"""

__version__ = "0.1.0"

from fraudvae.detector import FraudVAE, Scores
from fraudvae.errors import ConfigError, DataError, FraudVAEError, ModelFileError, NotFittedError, SchemaError
from fraudvae.example import example_transactions
from fraudvae.io import iter_table, read_table
from fraudvae.preprocess import Encoded
from fraudvae.schema import to_binary_label
from fraudvae.threshold import Threshold, calibrate

__all__ = ["FraudVAE", "Scores", "Encoded", "FraudVAEError", "ConfigError", "DataError", "SchemaError",
           "ModelFileError", "NotFittedError", "Threshold", "calibrate", "example_transactions", "read_table",
           "iter_table", "to_binary_label", "__version__"]
