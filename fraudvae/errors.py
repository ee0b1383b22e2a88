"""The library's exceptions: one small hierarchy, so callers (the CLI, the service) map them in one place."""

from __future__ import annotations


class FraudVAEError(Exception):
    """Base class of every error fraudvae raises on purpose."""


class ConfigError(FraudVAEError, ValueError):
    """A parameter is out of its allowed range."""


class DataError(FraudVAEError, ValueError):
    """Input data cannot be used: unreadable, empty, no usable column, a bad label column.

    ``row`` and ``column`` name the offending place when there is one (row: 0-based position or
    index label; column: the field name), so a caller can point at it without parsing the text."""

    def __init__(self, message: str, *, row: object = None, column: str | None = None) -> None:
        super().__init__(message)
        self.row = row
        self.column = column


class SchemaError(DataError):
    """Scoring data does not match the schema the model was trained on (names the column/row)."""


class ModelFileError(FraudVAEError):
    """A saved model directory is missing, incomplete, tampered with or from an unknown format."""


class StateStoreError(FraudVAEError):
    """The history state store cannot be reached or did not answer in time: nothing was scored or changed."""


class NotFittedError(FraudVAEError, AttributeError):
    """An inference method was called before `fit` (or `load`)."""
