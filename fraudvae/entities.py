"""What a `FraudVAE` does with the history of its entity columns (`fraudvae.history`): derive each
row's features from the entities' state, move the state on, refuse rows that come without them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraudvae.errors import ConfigError, DataError
from fraudvae.history import derive, seconds

if TYPE_CHECKING:
    from typing import Self

    from fraudvae.history import HistoryState


class EntityHistory:
    """A mixin of `FraudVAE`: ``history_`` is the entities' state (None without entity columns)."""

    history_: HistoryState | None

    def check_fitted(self) -> None:  # pragma: no cover - the estimator's
        raise NotImplementedError

    def replay(self, df: pd.DataFrame) -> Self:
        """Advance the entities' history (`history_`) through transactions `df` without scoring them:
        the days between the training file and the one to score. A model without entity columns
        has nothing to advance. Returns self."""
        self.check_fitted()
        if self.history_ is not None:
            self._check_continues(df)
            derive(self.history_.spec, df, self.history_)
        return self

    def with_history(self, df: pd.DataFrame) -> pd.DataFrame:
        """`df` with its history features (`fraudvae.history`) as columns, computed in time order from
        the entities' state `history_` through `df` (which is not changed: scoring the same rows
        twice gives the same scores; `replay` moves it on). `df` itself when the model has no
        entity columns, or when it holds the features already (the output of this method, or any
        slice of it: score and explain then use them as they are)."""
        self.check_fitted()
        if self.history_ is None or all(name in df.columns for name in self.history_.spec.names()):
            return df
        self._check_continues(df)
        features = derive(self.history_.spec, df, self.history_.copy())
        return df.assign(**features)

    def _check_continues(self, df: pd.DataFrame) -> None:
        """Refuse transactions most of which come before the end of the history the model holds: they
        are in it already (the training file scored again, or an earlier file), and continuing the history
        through them would count each a second time, making every entity look busier than it is. A few
        late transactions among later ones are scored against the state as it is (`fraudvae.history`)."""
        h = self.history_
        if h is not None and len(df) and np.isfinite(h.end):
            check_continues(int(np.count_nonzero(seconds(h.spec, df) < h.end)), len(df), h.spec.time_column, h.end)

    def check_history_columns(self, columns: Mapping[str, list], what: str) -> None:
        """Refuse columns of JSON values (`encode_columns`) without the history features a model with
        entity columns reads: they come from a state store (the service's), never from the rows alone."""
        history = self.history_
        if history is not None and not all(name in columns for name in history.spec.names()):
            raise ConfigError(f"{what}: this model reads the history of entity columns "
                              f"({', '.join(history.spec.entities)}), which needs each entity's earlier "
                              f"transactions; score files with `fraudvae score`, or serve it with a state store")


def check_continues(before: int, rows: int, time_column: str, end: float, fitting: bool = False) -> None:
    """The `DataError` for `rows` transactions `before` of which come before `end`, the end of the
    model's history (`EntityHistory._check_continues`; `fraudvae.spark`) or, `fitting`, of the
    transactions given with ``--history``, when they are most of them."""
    if 2 * before > rows:
        at = pd.Timestamp(end, unit="s").isoformat(sep=" ", timespec="seconds")
        held, doing, advice = (("--history transactions", "training on", "give --history only transactions from "
                                "before the training rows") if fitting else
                               ("history the model holds", "scoring", "the training file scored again does that; "
                                "score transactions after it, with --history for the days in between"))
        raise DataError(f"{before:,} of the {rows:,} transactions come before the end of the {held} ({at}, "
                        f"{time_column!r}): they are in it already, and {doing} them would count each a second time "
                        f"({advice})", column=time_column)
