"""The preparation spec: parsing, defaults and validation that lists every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_clustering.features.spec import (
    AGGREGATES,
    RangeRule,
    SpecError,
    expand,
    load_spec,
    parse_spec,
    share_column,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "prepare.toml"


def _minimal(**extra):
    doc = {"input": {"path": "in"}, "output": {"path": "out"}}
    for key, value in extra.items():
        doc.setdefault(key, {}).update(value)
    return doc


def test_example_spec_loads_with_its_values():
    spec = load_spec(str(EXAMPLE))
    assert spec.input.kind == "transactions"
    assert spec.input.id_col == "customer_id"
    assert spec.transactions.aggregates == AGGREGATES
    assert spec.columns.categorical == ("country",)
    assert spec.bad_input.ranges == (RangeRule("amount", 0.0, 100000.0, "drop"),)
    assert spec.clean.log1p == ("monetary", "avg_basket", "frequency", "recency_days")
    assert spec.scale.method == "standard" and spec.scale.with_mean is False
    assert spec.analysis.drop_correlated == 0.95
    assert spec.source == str(EXAMPLE)


def test_defaults_of_a_minimal_spec():
    spec = parse_spec(_minimal())
    assert spec.input.format == "parquet"
    assert spec.clean.impute_default.strategy == "median"
    # transactions: negative amounts are dropped (counted, logged) unless the spec says otherwise
    assert spec.bad_input.ranges == (RangeRule("amount", 0.0, None, "drop"),)
    assert spec.bad_input.non_numeric == "error"
    assert spec.analysis.correlation == ("pearson", "spearman")


def test_every_problem_is_listed_at_once():
    doc = {
        "input": {"format": "xlsx", "kind": "people", "colour": "red"},
        "output": {},
        "clean": {
            "winsorize_lower": 0.9,
            "winsorize_upper": 0.1,
            "log1p": ["monetry"],
            "impute": {"recency_days": {"strategy": "constant"}},
        },
        "scale": {"method": "zscore"},
        "analysis": {"drop_correlated": 1.5, "correlation": ["kendall"], "pca_components": 0},
        "extra": {},
    }
    with pytest.raises(SpecError) as err:
        parse_spec(doc, source="bad.toml")
    problems = err.value.problems
    text = str(err.value)
    assert "bad.toml" in text
    for needle in (
        "input.path is missing",
        "output.path is missing",
        "input.format='xlsx' is not valid; accepted: parquet, csv, json",
        "input.kind='people'",
        "unknown key input.colour",
        "unknown table [extra]",
        "clean.winsorize_lower=0.9 must be below clean.winsorize_upper=0.1",
        "clean.log1p names 'monetry'",
        "strategy 'constant' needs a numeric value",
        "scale.method='zscore'",
        "analysis.drop_correlated=1.5",
        "analysis.correlation has 'kendall'",
        "analysis.pca_components=0",
    ):
        assert any(needle in p for p in problems), (needle, problems)
    assert len(problems) >= 13


def test_customers_kind_needs_feature_columns_and_checks_ranges():
    with pytest.raises(SpecError, match="needs feature columns"):
        parse_spec(_minimal(input={"kind": "customers"}))
    doc = _minimal(
        input={"kind": "customers"},
        columns={"numeric": ["age", "income"], "categorical": ["age"]},
        bad_input={"ranges": {"income": {"min": 10, "max": 1, "action": "explode"}}},
    )
    with pytest.raises(SpecError) as err:
        parse_spec(doc)
    text = str(err.value)
    assert "both numeric and categorical" in text
    assert "min=10 is above max=1" in text
    assert "action='explode'" in text


def test_customers_spec_has_no_default_range_rule():
    spec = parse_spec(_minimal(input={"kind": "customers"}, columns={"numeric": ["age"]}))
    assert spec.bad_input.ranges == ()
    assert spec.static_feature_names() == ["age"]


def test_share_patterns_allowed_before_categories_are_known_and_globs_expand():
    spec = parse_spec(_minimal(clean={"winsorize": ["share_*", "monetary"], "log1p": ["m*"]}))
    assert spec.clean.winsorize == ("share_*", "monetary")
    names = ["recency_days", "monetary", "share_home", "share_toys"]
    assert expand(("share_*",), names) == ["share_home", "share_toys"]
    assert expand(("m*", "recency_days"), names) == ["recency_days", "monetary"]


def test_wrong_types_are_named():
    doc = _minimal(
        clean={"drop_constant": "yes", "winsorize": "monetary"}, output={"partitions": 0}
    )
    with pytest.raises(SpecError) as err:
        parse_spec(doc)
    text = str(err.value)
    assert "clean.drop_constant='yes' has the wrong type; accepted: bool" in text
    assert "output.partitions=0" in text


def test_share_column_is_sql_safe():
    assert share_column("Home & Garden") == "share_home___garden"
    assert share_column("") == "share_blank"


def test_load_spec_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_spec(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[input\npath = 1")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_spec(str(bad))


def test_with_paths_overrides():
    spec = parse_spec(_minimal()).with_paths("s3://b/in/", "s3://b/out/")
    assert spec.input.path == "s3://b/in/" and spec.output.path == "s3://b/out/"


def test_untrusted_transaction_rules_default_to_counted_drops():
    spec = parse_spec(_minimal())
    assert spec.bad_input.future_timestamps == "drop"
    assert spec.bad_input.duplicate_transactions == "drop"
    assert spec.transactions.transaction_id_col is None  # transaction_id when present
    spec = parse_spec(
        _minimal(
            bad_input={"future_timestamps": "clip", "duplicate_transactions": "keep"},
            transactions={"transaction_id_col": ""},
        )
    )
    assert spec.bad_input.future_timestamps == "clip"
    assert spec.bad_input.duplicate_transactions == "keep"
    assert spec.transactions.transaction_id_col == ""


def test_untrusted_transaction_rules_are_checked_at_load(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(
        '[input]\npath = "in"\nid_col = "cid"\n[output]\npath = "out"\n'
        '[transactions]\ntransaction_id_col = "cid"\n'
        '[bad_input]\nfuture_timestamps = "ignore"\nduplicate_transactions = 1\n'
    )
    with pytest.raises(SpecError) as err:
        load_spec(str(config))
    text = str(err.value)
    assert "bad_input.future_timestamps='ignore' is not valid; accepted: error, drop, clip" in text
    assert "bad_input.duplicate_transactions=1 has the wrong type; accepted: str" in text
    assert "transactions.transaction_id_col='cid' is the customer id column" in text


def test_example_and_default_specs_state_the_untrusted_rules():
    defaults = EXAMPLE.parents[1] / "lib" / "spark_clustering" / "jobs" / "defaults"
    for path in (EXAMPLE, defaults / "prepare.toml"):
        text = path.read_text()
        spec = load_spec(str(path))
        assert 'future_timestamps = "drop"' in text and spec.bad_input.future_timestamps == "drop"
        assert 'duplicate_transactions = "drop"' in text
        assert spec.transactions.transaction_id_col == "transaction_id"
