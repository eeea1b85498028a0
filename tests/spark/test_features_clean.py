"""Cleaning, scaling and assembly stages on hand-made inputs with known answers."""

from __future__ import annotations

import math

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.ml import Pipeline
from pyspark.ml.linalg import Vectors

from spark_clustering.features import assemble, clean, scale
from spark_clustering.features.spec import ImputeRule, ScaleSpec

pytestmark = pytest.mark.spark


def _plain(df):
    """The same columns without ML attribute metadata (chispa compares schemas with it)."""
    from pyspark.sql.types import StructField, StructType

    schema = StructType([StructField(f.name, f.dataType, f.nullable) for f in df.schema])
    return df.sparkSession.createDataFrame(df.collect(), schema)


@pytest.fixture(scope="module")
def numbers(spark):
    rows = [(i, float(v)) for i, v in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 100], start=1)]
    return spark.createDataFrame([*rows, (11, None)], "id long, x double")


def test_winsorize_clips_at_the_quantiles(spark, numbers):
    out, bounds = clean.winsorize(numbers, ["x"], 0.0, 0.9, relative_error=0.0)
    assert bounds == {"x": (1.0, 9.0)}
    expected = spark.createDataFrame(
        [(i, float(min(v, 9))) for i, v in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 100], 1)]
        + [(11, None)],  # a missing value stays missing
        "id long, x double",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_select_stage_casts_and_clips(spark):
    df = spark.createDataFrame(
        [(1, 5, "a", "junk"), (2, -3, None, "junk"), (3, None, "b", "junk")],
        "id long, n int, c string, other string",
    )
    stage = clean.select_stage("id", ["n"], ["c"], {"n": (0.0, 4.0)})
    expected = spark.createDataFrame(
        [(1, 4.0, "a"), (2, 0.0, None), (3, None, "b")], "id long, n double, c string"
    )
    assert_df_equality(stage.transform(df), expected, ignore_row_order=True, ignore_nullable=True)


def test_imputation_median_mean_constant_then_log1p(spark):
    df = spark.createDataFrame(
        [(1, 1.0, 1.0, 1.0), (2, 2.0, 2.0, None), (3, 9.0, 9.0, 3.0), (4, None, None, None)],
        "id long, med double, avg double, fix double",
    )
    rules = clean.resolve_impute_rules(
        ["med", "avg", "fix"],
        {"avg": ImputeRule("mean"), "f*": ImputeRule("constant", -0.5)},
        ImputeRule("median"),
    )
    assert rules["med"].strategy == "median" and rules["fix"].value == -0.5
    imputers, constants = clean.impute_stages(rules, relative_error=0.0)
    assert constants == {"fix": -0.5}
    assert sorted(type(s).__name__ for s in imputers) == ["Imputer", "Imputer"]
    fill = clean.fill_log_stage("id", ["med", "avg", "fix"], [], constants, ["fix"])
    out = Pipeline(stages=[*imputers, fill]).fit(df).transform(df)
    expected = spark.createDataFrame(
        [
            (1, 1.0, 1.0, math.log1p(1.0)),
            (2, 2.0, 2.0, math.log1p(-0.5)),
            (3, 9.0, 9.0, math.log1p(3.0)),
            (4, 2.0, 4.0, math.log1p(-0.5)),  # median 2, mean 4
        ],
        "id long, med double, avg double, fix double",
    )
    assert_approx_df_equality(
        out, expected, precision=1e-12, ignore_row_order=True, ignore_nullable=True
    )


def test_one_hot_keeps_every_level_and_an_unknown_bucket(spark):
    df = spark.createDataFrame([(1, "b"), (2, "a"), (3, None)], "id long, c string")
    model = Pipeline(
        stages=[*clean.one_hot_stages(["c"]), assemble.assembler_stage(["c__ohe"], "v")]
    ).fit(df)
    out = model.transform(df).select("id", "v")
    expected = spark.createDataFrame(
        [
            (1, Vectors.sparse(3, [1], [1.0])),
            (2, Vectors.sparse(3, [0], [1.0])),
            (3, Vectors.sparse(3, [2], [1.0])),
        ],
        ["id", "v"],
    )
    assert_df_equality(_plain(out), expected, ignore_row_order=True, ignore_nullable=True)
    names = assemble.display_names(assemble.feature_names(out, "v"), ["c"])
    assert names == ["c=a", "c=b", "c=__unknown"]
    # an unseen level goes to the unknown bucket
    new = spark.createDataFrame([(4, "z")], "id long, c string")
    assert model.transform(new).first()["v"] == Vectors.sparse(3, [2], [1.0])


def test_constant_slots(spark):
    df = spark.createDataFrame(
        [(Vectors.dense([1.0, 5.0, 0.0, 2.0]),), (Vectors.sparse(4, [1], [5.0]),)], ["v"]
    )
    # slot 1 is always 5, slot 2 always 0 (implicitly, in the sparse row)
    assert clean.constant_slots(df, "v") == [1, 2]


def test_log1p_domain_is_checked(spark):
    df = spark.createDataFrame([(1, -2.0)], "id long, x double")
    with pytest.raises(ValueError, match=r"clean.log1p: columns \['x'\] have values <= -1"):
        clean.check_log1p_domain(df, ["x"])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # std of (2, 4, 6) is 2; no centering
        (ScaleSpec("standard"), [[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]),
        (ScaleSpec("standard", with_mean=True), [[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]),
        (ScaleSpec("minmax"), [[0.0, 0.5], [0.5, 0.5], [1.0, 0.5]]),
        (ScaleSpec("minmax", min=-1.0, max=1.0), [[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]),
        # exact quartiles of (2, 4, 6) are 2 and 6: range 4
        (ScaleSpec("robust"), [[0.5, 0.0], [1.0, 0.0], [1.5, 0.0]]),
    ],
)
def test_scalers(spark, spec, expected):
    df = spark.createDataFrame(
        [(i, Vectors.dense([v, 7.0])) for i, v in enumerate([2.0, 4.0, 6.0])], ["id", "v"]
    )
    model = scale.scaler_stage(spec, "v", "s", relative_error=0.0).fit(df)
    out = model.transform(df).select("id", "s")
    want = spark.createDataFrame(
        [(i, Vectors.dense(e)) for i, e in enumerate(expected)], ["id", "s"]
    )
    assert_approx_df_equality(_plain(out), want, precision=1e-12, ignore_row_order=True)
    # the constant second slot has zero spread: it is reported
    assert scale.degenerate_features(model, ["x", "k"]) == ["k"]


def test_none_scaler_is_no_stage():
    assert scale.scaler_stage(ScaleSpec("none"), "v", "s") is None


def test_feature_names_stage_sets_metadata_and_round_trips(spark, tmp_path):
    df = spark.createDataFrame([(1, Vectors.dense([1.0, 2.0]), "x")], ["cid", "v", "other"])
    stage = assemble.FeatureNames(inputCol="v", idCol="cid", featureNames=["a", "b"])
    out = stage.transform(df)
    assert out.columns == ["cid", "features"]
    assert assemble.feature_names(out) == ["a", "b"]
    stage.write().overwrite().save(str(tmp_path / "names"))
    loaded = assemble.FeatureNames.load(str(tmp_path / "names"))
    assert loaded.getFeatureNames() == ["a", "b"] and loaded.getIdCol() == "cid"
    with pytest.raises(ValueError, match="no feature names"):
        assemble.feature_names(df, "v")
