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
    imputers, constants = clean.impute_stages(rules, df, ["id"])
    # the median (rank ceil(n/2) of 1, 2, 9) and the mean are filled like constants
    assert constants == {"fix": -0.5, "med": 2.0, "avg": 4.0}
    assert imputers == []
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


def test_mode_imputation_is_sparks_imputer(spark):
    df = spark.createDataFrame([(1, 3.0), (2, 3.0), (3, 5.0), (4, None)], "id long, m double")
    rules = clean.resolve_impute_rules(["m"], {}, ImputeRule("mode"))
    imputers, constants = clean.impute_stages(rules, df, ["id"])
    assert constants == {}
    out = Pipeline(stages=imputers).fit(df).transform(df)
    assert sorted(r["m"] for r in out.collect()) == [3.0, 3.0, 3.0, 5.0]


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
    model = scale.fit_scaler(spec, df, "v", "s", ["id"])
    out = model.transform(df).select("id", "s")
    want = spark.createDataFrame(
        [(i, Vectors.dense(e)) for i, e in enumerate(expected)], ["id", "s"]
    )
    assert_approx_df_equality(_plain(out), want, precision=1e-12, ignore_row_order=True)
    # the constant second slot has zero spread: it is reported
    assert scale.degenerate_features(model, ["x", "k"]) == ["k"]


def test_none_scaler_is_no_stage(spark):
    assert scale.scaler_stage(ScaleSpec("none"), "v", "s") is None
    df = spark.createDataFrame([(1, Vectors.dense([1.0]))], ["id", "v"])
    assert scale.fit_scaler(ScaleSpec("none"), df, "v", "s", ["id"]) is None


@pytest.mark.parametrize(
    "spec",
    [ScaleSpec("standard"), ScaleSpec("standard", with_mean=True), ScaleSpec("robust"),
     ScaleSpec("robust", with_mean=True, lower=0.1, upper=0.8)],
)  # fmt: skip
def test_fitted_scaler_is_sparks_model_with_sparks_statistics(spark, spec, tmp_path):
    """The model built from our statistics equals Spark's own fit (exact quantiles for robust),
    saves and loads as Spark's, and keeps sparse rows sparse when not centring."""
    import numpy as np
    from pyspark.ml import PipelineModel

    rng = np.random.default_rng(3)
    rows = []
    for i in range(400):
        x = rng.lognormal(size=3) * [1.0, 10.0, 0.01]
        v = Vectors.sparse(3, [1], [x[1]]) if i % 3 == 0 else Vectors.dense(x)
        rows.append((i, v))
    df = spark.createDataFrame(rows, ["id", "v"]).repartition(3)
    ours = scale.fit_scaler(spec, df, "v", "s", ["id"], relative_error=0.0)
    theirs = scale.scaler_stage(spec, "v", "s", relative_error=0.0).fit(df)
    assert type(ours) is type(theirs)
    if spec.method == "standard":
        np.testing.assert_allclose(ours.std.toArray(), theirs.std.toArray(), rtol=1e-12)
        np.testing.assert_allclose(ours.mean.toArray(), theirs.mean.toArray(), rtol=1e-12)
    else:
        assert ours.range == theirs.range and ours.median == theirs.median
    assert ours.getInputCol() == "v" and ours.getOutputCol() == "s"
    got = {r["id"]: r["s"] for r in ours.transform(df).collect()}
    want = {r["id"]: r["s"] for r in theirs.transform(df).collect()}
    for i in want:
        np.testing.assert_allclose(got[i].toArray(), want[i].toArray(), rtol=1e-12)
    if not spec.with_mean:
        assert type(got[0]).__name__ == "SparseVector"
    PipelineModel(stages=[ours]).write().overwrite().save(str(tmp_path / "m"))
    loaded = PipelineModel.load(str(tmp_path / "m")).stages[0]
    assert type(loaded) is type(ours)
    assert loaded.transform(df).collect() == ours.transform(df).collect()


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
