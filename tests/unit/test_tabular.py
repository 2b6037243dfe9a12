"""Tabular rows -> features: named and ordered rows, CSV, defaults, categories, ranges, and every refusal."""

from __future__ import annotations

import re

import numpy as np
import pytest

from service.errors import BadRequest, InvalidInput
from service.kinds.tabular.preprocess import Feature, TabularSpec, parse_csv

SPEC = TabularSpec(
    features=[
        Feature(name="age", min=18, max=90, integer=True),
        Feature(name="plan", type="categorical", categories=["basic", "pro"]),
        Feature(name="spend", min=0, max=100, required=False, default=12.5),
    ]
)


def test_named_and_ordered_rows_encode_the_same() -> None:
    x, notes = SPEC.encode(
        [{"age": 30, "plan": "pro", "spend": 40}, [30, "pro", 40], {"age": "30", "plan": "PRO"}]
    )
    assert x.dtype == np.float32 and x.shape == (3, 3)
    assert x[0].tolist() == [30, 1, 40] == x[1].tolist()
    assert x[2].tolist() == [30, 1, 12.5]  # the optional feature's default; categories match case-blind
    assert notes == [{"out_of_range": []}] * 3


def test_out_of_range_values_are_answered_and_flagged() -> None:
    x, notes = SPEC.encode([{"age": 120, "plan": "basic", "spend": -1}])
    assert x[0].tolist() == [120, 0, -1]
    assert [o["feature"] for o in notes[0]["out_of_range"]] == ["age", "spend"]
    assert notes[0]["out_of_range"][0] == {"feature": "age", "value": 120.0, "min": 18, "max": 90}


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"plan": "pro"}, "feature 'age' is missing"),
        ({"age": None, "plan": "pro"}, "feature 'age' is missing"),
        (
            {"age": 30, "plan": "pro", "height": 2},
            "unknown feature 'height'; the features are: age, plan, spend",
        ),
        ({"age": "old", "plan": "pro"}, "feature 'age' must be a number, got 'old'"),
        ({"age": True, "plan": "pro"}, "feature 'age' must be a number, got bool"),
        ({"age": [1], "plan": "pro"}, "must be a number, got list"),
        ({"age": "NaN", "plan": "pro"}, "feature 'age' is missing"),
        ({"age": "inf", "plan": "pro"}, "must be a finite number"),
        (
            {"age": 30, "plan": "gold"},
            "feature 'plan': unknown category 'gold'; the categories are: basic, pro",
        ),
        ([30, "pro"], "holds 2 values; the model takes 3, in this order: age, plan, spend"),
        ("a row", "must be an object of named features or a list of 3 values"),
    ],
)
def test_bad_rows_are_refused_naming_the_feature(row: object, needle: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(needle)):
        SPEC.encode([row])


def test_the_culprit_row_is_named_among_many() -> None:
    with pytest.raises(InvalidInput, match=r"^row 1: feature 'plan'"):
        SPEC.encode([{"age": 30, "plan": "pro"}, {"age": 30, "plan": "?"}])


def test_a_declared_fallback_reads_unknown_categories_and_says_so() -> None:
    spec = SPEC.model_copy(deep=True)
    spec.features[1].fallback = "basic"
    x, notes = spec.encode([{"age": 30, "plan": "gold"}])
    assert x[0, 1] == 0
    assert notes[0]["fallbacks"] == [{"feature": "plan", "value": "gold", "read_as": "basic"}]


def test_v2_matrices_are_checked_for_nan_and_category_indices() -> None:
    SPEC.check_matrix(np.array([[30, 1, 5]], np.float32))
    with pytest.raises(InvalidInput, match="'age' \\(column 0\\) holds NaN"):
        SPEC.check_matrix(np.array([[np.nan, 1, 5]], np.float32))
    with pytest.raises(InvalidInput, match="'plan' \\(column 1\\) is categorical"):
        SPEC.check_matrix(np.array([[30, 2, 5]], np.float32))


def test_csv_parsing() -> None:
    assert parse_csv(b"\xef\xbb\xbfage,plan\r\n30,pro\r\n\r\n40,basic\n") == [
        {"age": "30", "plan": "pro"},
        {"age": "40", "plan": "basic"},
    ]
    for data, needle in [
        (b"", "empty"),
        (b"age,age\n1,2\n", "twice"),
        (b"age,plan\n1\n", "line 2 has 1 cells; the header has 2"),
        (b"\xff\xfe", "UTF-8"),
    ]:
        with pytest.raises(BadRequest, match=needle):
            parse_csv(data)
    x, _ = SPEC.encode(parse_csv(b"age,plan,spend\n30,pro,\n"))  # an empty cell: the default
    assert x[0].tolist() == [30, 1, 12.5]
