"""Drift reference and comparison on Spark: decile bins, PSI per feature, noise share."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.feature import VectorAssembler

from spark_clustering.jobs.drift import Thresholds, bin_shares, compare, reference

pytestmark = pytest.mark.spark


def _frame(spark, x: np.ndarray, noise: np.ndarray):
    rows = [
        (i, float(a), float(b), bool(n)) for i, ((a, b), n) in enumerate(zip(x, noise, strict=True))
    ]
    df = spark.createDataFrame(rows, "id long, recency double, monetary double, is_noise boolean")
    feats = VectorAssembler(inputCols=["recency", "monetary"], outputCol="features").transform(df)
    return feats.select("id", "features"), df.select("id", "is_noise")


def test_bin_shares_count_each_bin_once(spark):
    values = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, None]
    df = spark.createDataFrame([(v,) for v in values], "x double")
    # edges 2 and 4: bins (-inf, 2], (2, 4], (4, inf); the null is left out
    assert bin_shares(df, {"x": [2.0, 4.0]}) == {"x": [3 / 6, 2 / 6, 1 / 6]}


def test_the_same_distribution_does_not_drift_a_shifted_one_does(spark):
    rng = np.random.default_rng(0)
    fit_x = rng.normal(size=(4000, 2))
    fit, fit_assigned = _frame(spark, fit_x, rng.random(4000) < 0.05)
    ref = reference(fit, "features", fit_assigned, "dbscan")
    assert set(ref["features"]) == {"recency", "monetary"}
    assert all(len(r["edges"]) == 9 and len(r["shares"]) == 10 for r in ref["features"].values())
    assert all(abs(s - 0.1) < 0.002 for r in ref["features"].values() for s in r["shares"])
    assert ref["noise_share"] == pytest.approx(0.05, abs=0.01) and "fit" not in ref

    same, same_assigned = _frame(spark, rng.normal(size=(3000, 2)), rng.random(3000) < 0.05)
    calm = compare(ref, same, "features", same_assigned, Thresholds())
    assert not calm["drifted"] and calm["reasons"] == []
    assert max(calm["psi"].values()) < 0.05

    moved = rng.normal(size=(3000, 2))
    moved[:, 1] += 1.0  # monetary shifts by one standard deviation
    shifted, shifted_assigned = _frame(spark, moved, rng.random(3000) < 0.30)
    found = compare(ref, shifted, "features", shifted_assigned, Thresholds())
    assert found["drifted"]
    assert found["psi"]["monetary"] > 0.25 > found["psi"]["recency"]
    assert found["reasons"][0].startswith("monetary: PSI ")
    assert found["reasons"][1].startswith("noise share 0.")
    assert found["noise_share"]["fit"] == ref["noise_share"]


def test_missing_features_are_named(spark):
    rng = np.random.default_rng(1)
    fit, assigned = _frame(spark, rng.normal(size=(500, 2)), np.zeros(500, bool))
    ref = reference(fit, "features", assigned, "dbscan")
    other = VectorAssembler(inputCols=["recency"], outputCol="features").transform(
        spark.createDataFrame([(1, 0.5)], "id long, recency double")
    )
    with pytest.raises(ValueError, match=r"the scored features lack \['monetary'\]"):
        compare(ref, other, "features", assigned, Thresholds())
