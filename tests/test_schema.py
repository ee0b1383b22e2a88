import numpy as np
import pandas as pd
import pytest

from fraudvae.errors import DataError, SchemaError
from fraudvae.schema import infer_schema, to_binary_label


def test_roles_are_inferred(mixed):
    s = infer_schema(mixed, label_column="label")
    roles = {c.name: c.role for c in s.columns}
    assert roles == {"amount": "numeric", "code": "categorical", "city": "categorical", "flagged": "binary"}
    assert s.dropped["row_id"].startswith("row id")
    assert s.dropped["const"] == "constant"
    assert s.dropped["note"].startswith("free text")
    assert s.dropped["ref"].startswith("row id")
    assert "label" not in s.names()


def test_clock_columns_are_left_out(mixed):
    df = mixed.assign(year=np.repeat([2021, 2022, 2023, 2024], 50))
    s = infer_schema(df, label_column="label")
    assert s.dropped["year"].startswith("time or sequence column")
    assert "year" in infer_schema(df, label_column="label", categorical=("year",)).names("categorical")


def test_overrides(mixed):
    s = infer_schema(mixed, label_column="label", id_column="ref", drop=("city",), categorical=("const",))
    assert "city" not in s.names() and s.dropped["city"] == "dropped on request"
    assert s.id_column == "ref"
    assert "const" in s.names("categorical")


def test_unknown_option_column_is_named(mixed):
    with pytest.raises(DataError, match="--label-column 'nope' is not a column"):
        infer_schema(mixed, label_column="nope")


def test_no_usable_column():
    df = pd.DataFrame({"id": np.arange(50), "c": 1})
    with pytest.raises(DataError, match="no usable column"):
        infer_schema(df)


def test_check_names_missing_columns(mixed):
    s = infer_schema(mixed, label_column="label")
    with pytest.raises(SchemaError, match="'amount', 'city'"):
        s.check(mixed.drop(columns=["amount", "city"]))


@pytest.mark.parametrize("values,expected", [([0, 1, 1], [0, 1, 1]), ([True, False, True], [1, 0, 1]),
                                             (["yes", "no", "Fraud"], [1, 0, 1])])
def test_binary_labels(values, expected):
    assert to_binary_label(pd.Series(values), "y").tolist() == expected


def test_non_binary_label_is_named():
    with pytest.raises(DataError, match=r"label column 'y' is not binary: value 2 \(row 1\)"):
        to_binary_label(pd.Series([0, 2, 1]), "y")
