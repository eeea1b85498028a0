"""Reading and checking the input: every kind of bad input is a clear error or a counted,
logged handling, as the spec chooses."""

from __future__ import annotations

import logging

import pytest
from chispa import assert_df_equality

from spark_clustering.features.io import (
    InputReport,
    handle_duplicate_ids,
    read_input,
    validate_input,
)
from spark_clustering.features.spec import parse_spec

pytestmark = pytest.mark.spark


def _spec(path="unused", numeric=("income",), categorical=(), fmt="parquet", **bad):
    doc = {
        "input": {"path": path, "kind": "customers", "id_col": "id", "format": fmt},
        "output": {"path": "out"},
        "columns": {"numeric": list(numeric), "categorical": list(categorical)},
        "bad_input": bad,
    }
    return parse_spec(doc)


@pytest.fixture(scope="module")
def people(spark):
    return spark.createDataFrame(
        [(1, "10.5", "a"), (2, "abc", "b"), (3, None, "c"), (4, " 7 ", None)],
        "id long, income string, segment string",
    )


def test_missing_and_misnamed_columns_are_all_named_before_any_work(spark):
    df = spark.createDataFrame([(1, 2.0, [1.0])], "id long, incme double, tags array<double>")
    spec = _spec(numeric=("income", "tags"), categorical=("region",))
    with pytest.raises(ValueError) as err:
        validate_input(df, spec)
    text = str(err.value)
    assert "column 'income' (numeric) is missing (did you mean 'incme'?)" in text
    assert "column 'region' (string) is missing" in text
    assert "column 'tags' has type array<double>, which cannot be used as numeric" in text


def test_non_numeric_values_fail_with_examples(people):
    with pytest.raises(ValueError, match=r"column 'income' has 1 value\(s\) that are not numbers"):
        validate_input(people, _spec())


def test_non_numeric_values_can_become_missing(spark, people, caplog):
    with caplog.at_level(logging.WARNING):
        out, report, _ = validate_input(people, _spec(non_numeric="null"))
    assert report.non_numeric == {"income": 1}
    assert "1 non-numeric value(s) treated as missing" in caplog.text
    expected = spark.createDataFrame(
        [(1, 10.5), (2, None), (3, None), (4, 7.0)], "id long, income double"
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_empty_input(spark):
    df = spark.createDataFrame([], "id long, income double")
    with pytest.raises(ValueError, match="has no rows"):
        validate_input(df, _spec())


def test_entirely_null_column_error_or_drop(spark):
    df = spark.createDataFrame(
        [(1, None, 2.0), (2, None, 3.0)], "id long, income double, age double"
    )
    with pytest.raises(ValueError, match=r"column 'income' is entirely null in 2 rows"):
        validate_input(df, _spec(numeric=("income", "age")))
    out, report, dropped = validate_input(df, _spec(numeric=("income", "age"), all_null="drop"))
    assert dropped == ["income"] and report.all_null_dropped == ["income"]
    assert out.columns == ["id", "age"]


def test_null_ids_error_or_drop(spark):
    df = spark.createDataFrame([(1, 1.0), (None, 2.0)], "id long, income double")
    with pytest.raises(ValueError, match=r"id column 'id' is null in 1 row\(s\)"):
        validate_input(df, _spec())
    out, report, _ = validate_input(df, _spec(null_ids="drop"))
    assert report.null_ids == 1 and out.count() == 1


@pytest.fixture(scope="module")
def amounts(spark):
    return spark.createDataFrame(
        [(1, -5.0), (2, 10.0), (3, 5000.0), (4, None)], "id long, income double"
    )


def _ranges(action):
    return {"income": {"min": 0.0, "max": 1000.0, "action": action}}


def test_range_rule_error(amounts):
    with pytest.raises(ValueError, match=r"1 value\(s\) below and 1 above the accepted range"):
        validate_input(amounts, _spec(ranges=_ranges("error")))


@pytest.mark.parametrize(
    ("action", "rows"),
    [
        ("drop", [(2, 10.0), (4, None)]),
        ("clip", [(1, 0.0), (2, 10.0), (3, 1000.0), (4, None)]),
        ("null", [(1, None), (2, 10.0), (3, None), (4, None)]),
    ],
)
def test_range_rule_handling_is_counted(spark, amounts, action, rows):
    out, report, _ = validate_input(amounts, _spec(ranges=_ranges(action)))
    assert report.range_violations["income"]["below_min"] == 1
    assert report.range_violations["income"]["above_max"] == 1
    assert report.range_violations["income"]["action"] == action
    expected = spark.createDataFrame(rows, "id long, income double")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.fixture(scope="module")
def duplicated(spark):
    return spark.createDataFrame(
        [(1, 3.0), (1, 2.0), (2, 5.0), (3, 1.0), (3, None)], "id long, income double"
    )


def test_duplicate_ids_error(duplicated):
    with pytest.raises(ValueError, match=r"has 2 duplicated id\(s\) over 4 rows.*e.g. \[1, 3\]"):
        handle_duplicate_ids(duplicated, "id", "error", InputReport())


def test_duplicate_ids_keep_one_is_deterministic(spark, duplicated):
    report = InputReport()
    out = handle_duplicate_ids(duplicated, "id", "keep_one", report)
    assert report.duplicate_ids == 2 and report.duplicate_rows_dropped == 2
    expected = spark.createDataFrame([(1, 2.0), (2, 5.0), (3, 1.0)], "id long, income double")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_duplicate_ids_drop(spark, duplicated):
    report = InputReport()
    out = handle_duplicate_ids(duplicated, "id", "drop", report)
    assert report.duplicate_rows_dropped == 4
    expected = spark.createDataFrame([(2, 5.0)], "id long, income double")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_read_csv_and_json_and_missing_path(spark, tmp_path):
    csv = tmp_path / "people.csv"
    csv.write_text("id,income,segment\n1,10.5,a\n2,oops,b\n")
    df = read_input(spark, _spec(str(csv), fmt="csv").input)
    with pytest.raises(ValueError, match=r"e.g. \['oops'\]"):
        validate_input(df, _spec(str(csv), fmt="csv"))
    js = tmp_path / "people.json"
    js.write_text('{"id": 1, "income": 3.5}\n{"id": 2, "income": 4}\n')
    out, report, _ = validate_input(read_input(spark, _spec(str(js), fmt="json").input), _spec())
    assert report.rows_read == 2
    assert sorted(r["income"] for r in out.collect()) == [3.5, 4.0]
    with pytest.raises(ValueError, match=r"input.path='.*nowhere' does not exist"):
        read_input(spark, _spec(str(tmp_path / "nowhere")).input)
