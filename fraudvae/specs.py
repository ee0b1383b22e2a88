"""What preprocessing learned about each column, one frozen dataclass per role, with the JSON
layout of ``model.json``'s ``preprocessing`` (`to_dict` / `from_dict`). Keys that models of earlier
versions lack read as the behaviour those versions had."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NumericSpec:
    log: bool  # modelled on a (signed) log scale
    center: float  # mean of the (logged) training values the Gaussian describes
    scale: float  # their standard deviation (1 when constant)
    fill: float  # the network input for a gap: their median
    indicator: bool  # training had gaps: a missing indicator is a 0/1 feature
    point_mass: float | None = None  # a value holding a large share of training rows, modelled as an atom
    point_mass_share: float | None = None  # that share (what a gap's atom indicator stands in for)
    decimal: str = "."  # the decimal mark the training file used
    min: float | None = None  # training range and precision, for `Preprocessor.inverse` only
    max: float | None = None
    decimals: int | None = None
    # a gap's point-mass indicator says nothing (its term is masked, as the number's is); False, as models
    # saved before this was added have it: the training share stands in as the indicator's target
    gap_says_nothing: bool = False

    def to_dict(self) -> dict:
        d = {"log": self.log, "center": self.center, "scale": self.scale, "fill": self.fill,
             "indicator": self.indicator, "spike": self.point_mass, "spike_share": self.point_mass_share,
             "decimal": self.decimal, "min": self.min, "max": self.max, "decimals": self.decimals}
        return d | ({"spike_gap_masked": True} if self.gap_says_nothing else {})

    @classmethod
    def from_dict(cls, d: dict) -> NumericSpec:
        return cls(bool(d["log"]), float(d["center"]), float(d["scale"]), float(d["fill"]), bool(d["indicator"]),
                   d.get("spike"), d.get("spike_share"), d.get("decimal", "."), d.get("min"), d.get("max"),
                   d.get("decimals"), bool(d.get("spike_gap_masked", False)))


@dataclass(frozen=True)
class BinarySpec:
    fill: float  # 0 or 1: the network input for a gap (the commoner value)
    indicator: bool  # training had gaps: a missing indicator is a 0/1 feature
    low: float | None = None  # a two-valued number column: its two values; None for true/false columns
    high: float | None = None
    decimal: str = "."

    def to_dict(self) -> dict:
        d: dict = {"low": self.low, "high": self.high}
        if self.low is not None:
            d["decimal"] = self.decimal
        return {**d, "fill": self.fill, "indicator": self.indicator}

    @classmethod
    def from_dict(cls, d: dict) -> BinarySpec:
        return cls(float(d["fill"]), bool(d["indicator"]), d.get("low"), d.get("high"), d.get("decimal", "."))


@dataclass(frozen=True)
class CategoricalSpec:
    vocabulary: tuple[str, ...]  # training categories kept, most frequent first (indices from 2)
    missing: bool = True  # training had gaps: a gap is a category (models before this was recorded: yes)

    def to_dict(self) -> dict:
        return {"vocabulary": list(self.vocabulary), "missing": self.missing}

    @classmethod
    def from_dict(cls, d: dict) -> CategoricalSpec:
        return cls(tuple(d["vocabulary"]), bool(d.get("missing", True)))


@dataclass(frozen=True)
class TimeSpec:
    unit: str | None  # "s" or "ms" for epoch numbers; None for text
    format: str | None  # the text's date-time format (None: ISO 8601 or mixed)
    hour: tuple[str, ...]  # vocabularies of the two features a time column becomes
    weekday: tuple[str, ...]
    missing: bool

    def to_dict(self) -> dict:
        return {"unit": self.unit, "format": self.format, "hour": list(self.hour), "weekday": list(self.weekday),
                "missing": self.missing}

    @classmethod
    def from_dict(cls, d: dict) -> TimeSpec:
        return cls(d["unit"], d["format"], tuple(d["hour"]), tuple(d["weekday"]), bool(d["missing"]))
