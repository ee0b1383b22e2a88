"""Analyst feedback for `fraudvae fit --feedback REVIEWED.csv`: a file of ``id,decision`` rows
(decision ``fraud`` or ``legit``), joined on the model's id column. Rows reviewed as fraud are kept
out of training and calibration and count as frauds in the fit's precision and recall; rows reviewed
as legitimate are normal rows, whatever the label column says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fraudvae.errors import ConfigError, DataError
from fraudvae.schema import label_of
from fraudvae.writing import file_sha256

DECISIONS = {"fraud": 1, "legit": 0}


def read_feedback(path: str | Path) -> dict[str, int]:
    """id -> 1 (fraud) or 0 (legit). A decision that is neither, a missing id, or one id given two
    different decisions is an error naming the line (the header is line 1)."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the feedback file {str(path)!r}: {e}") from None
    cols = {c.strip().lower(): c for c in raw.columns}
    if "id" not in cols or "decision" not in cols:
        raise DataError(f"the feedback file {str(path)!r} needs the columns id and decision "
                        f"(got {', '.join(map(repr, raw.columns))})")
    decisions: dict[str, int] = {}
    where: dict[str, int] = {}
    for i, (rid, decision) in enumerate(zip(raw[cols["id"]], raw[cols["decision"]], strict=True)):
        line, rid, d = i + 2, str(rid).strip(), str(decision).strip().lower()
        if not rid:
            raise DataError(f"{path}:{line}: line {line} has no id", row=line, column="id")
        if d not in DECISIONS:
            raise DataError(f"{path}:{line}: line {line} has decision {decision!r}; it must be fraud or legit",
                            row=line, column="decision")
        if rid in decisions and decisions[rid] != DECISIONS[d]:
            raise DataError(f"{path}:{line}: line {line} reviews id {rid!r} as {d}, line {where[rid]} as the other",
                            row=line, column="decision")
        decisions[rid], where[rid] = DECISIONS[d], line
    return decisions


def apply_feedback(df: pd.DataFrame, path: str | Path, id_column: str | None,
                   label_column: str | None) -> tuple[pd.DataFrame, str, dict]:
    """`df` with a 0/1 label column that the feedback overrides, that column's name, and what the
    feedback did (counts and the file's sha256, for the model's record)."""
    if id_column is None:
        raise ConfigError("--feedback needs --id-column: the reviewed ids are joined on it")
    if id_column not in df.columns:
        raise DataError(f"id column {id_column!r} is not a column of the data", column=id_column)
    decisions = read_feedback(path)
    if label_column is not None:
        labels = label_of(df, label_column)
    else:
        label_column = "reviewed_fraud"
        while label_column in df.columns:
            label_column = "_" + label_column
        labels = np.zeros(len(df), dtype=np.int64)
    ids = df[id_column].map(lambda v: str(v).strip()).to_numpy()
    review = pd.Series(ids).map(decisions).to_numpy(dtype=float)  # NaN: not reviewed
    reviewed = ~np.isnan(review)
    new = np.where(reviewed, np.nan_to_num(review).astype(np.int64), labels)
    found = set(ids[reviewed])
    counts = {
        "file": str(path), "sha256": file_sha256(path),
        "decisions": len(decisions), "fraud": sum(v == 1 for v in decisions.values()),
        "legit": sum(v == 0 for v in decisions.values()), "rows_reviewed": int(reviewed.sum()),
        "moved_to_fraud": int(((labels == 0) & (new == 1)).sum()),
        "moved_to_normal": int(((labels == 1) & (new == 0)).sum()),
        "unknown_ids": len(set(decisions) - found),
    }
    return df.assign(**{label_column: new}), label_column, counts
