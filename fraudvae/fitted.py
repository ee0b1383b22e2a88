"""`FittedState`: everything `FraudVAE.fit` learns apart from the network's weights, described once.

Fitting builds one, saving writes its `to_dict`, loading reads it back with `from_dict` (which
refuses a state that does not fit together), and `FraudVAE.describe` reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fraudvae.config import TrainConfig
from fraudvae.history import HistorySpec
from fraudvae.model import ModelConfig
from fraudvae.preprocess import Preprocessor
from fraudvae.schema import Schema
from fraudvae.threshold import Threshold


@dataclass(frozen=True)
class FittedState:
    schema: Schema
    preprocessor: Preprocessor
    model_config: ModelConfig
    train_config: TrainConfig
    threshold: Threshold
    baseline: np.ndarray  # (n_columns,) each column's median contribution on validation normals
    metrics: dict  # row counts, epochs, losses, and precision / recall when labelled frauds exist
    lineage: dict | None = None  # a model derived from another (recalibrated): the parent's version, the data
    history: HistorySpec | None = None  # the entities whose history gives features (`fraudvae.history`)

    def with_threshold(self, threshold: Threshold, lineage: dict | None = None) -> FittedState:
        return replace(self, threshold=threshold, lineage=lineage if lineage is not None else self.lineage)

    def to_dict(self) -> dict:
        """JSON-ready, in the layout of ``model.json``."""
        return {
            "schema": self.schema.to_dict(),
            "preprocessing": self.preprocessor.to_dict(),
            "model_config": self.model_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "threshold": self.threshold.to_dict(),
            "validation_quantiles": self.threshold.quantiles(),
            "baseline_contributions": [float(x) for x in self.baseline],
            "metrics": self.metrics,
            **({"lineage": self.lineage} if self.lineage is not None else {}),
            **({"history": self.history.to_dict()} if self.history is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FittedState:
        """From `to_dict`'s layout (as every version wrote it). Raises ValueError, KeyError or
        TypeError when a part is missing or the preprocessing does not fit the network."""
        schema = Schema.from_dict(d["schema"])
        pre = Preprocessor.from_dict(schema, d["preprocessing"])
        mc = ModelConfig.from_dict(d["model_config"])
        layout = (pre.n_numeric, len(pre.binary_owners), tuple(pre.cardinalities))
        if layout != (mc.n_numeric, mc.n_binary, mc.cardinalities):
            raise ValueError(f"the preprocessing state does not fit the network ({layout[0]} numbers, {layout[1]} "
                             f"flags, categories {list(layout[2])} against model_config {mc})")
        baseline = np.asarray(d["baseline_contributions"], dtype=float)
        if baseline.shape != (len(schema.names()),):
            raise ValueError(f"baseline_contributions holds {baseline.size} values for {len(schema.names())} columns")
        history = HistorySpec.from_dict(d["history"]) if d.get("history") is not None else None
        return cls(schema, pre, mc, TrainConfig.from_dict(d["train_config"]), Threshold.from_dict(d["threshold"]),
                   baseline, d["metrics"], d.get("lineage"), history)
