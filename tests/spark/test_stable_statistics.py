"""Order-independent statistics: exact quantiles and fixed-order moments, on any layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyspark.sql import functions as F

from spark_clustering.features import stable

pytestmark = pytest.mark.spark


def _inverted_cdf(values: np.ndarray, q: float) -> float:
    v = np.sort(values[~np.isnan(values)])
    return float(v[min(len(v), max(1, math.ceil(q * len(v)))) - 1])


@pytest.fixture(scope="module")
def table(spark):
    rng = np.random.default_rng(11)
    n = 6000
    x = rng.lognormal(0.0, 2.0, n)
    ties = rng.integers(0, 5, n).astype(float)  # heavy ties
    sparse = np.where(rng.random(n) < 0.8, 0.0, rng.normal(size=n))
    gaps = np.where(rng.random(n) < 0.3, np.nan, rng.normal(1e6, 1e-3, n))  # nulls, big mean
    rows = [
        (i, float(a), float(b), float(c), None if math.isnan(d) else float(d))
        for i, (a, b, c, d) in enumerate(zip(x, ties, sparse, gaps, strict=True))
    ]
    df = spark.createDataFrame(rows, "id long, x double, ties double, sparse double, gaps double")
    return df, {"x": x, "ties": ties, "sparse": sparse, "gaps": gaps}


def _layouts(df):
    """The same rows in 1, 3 and 7 partitions, in different orders."""
    yield df.coalesce(1)
    yield df.repartition(3).orderBy(F.rand(1)).repartition(3)
    yield df.repartition(7, "x").sortWithinPartitions(F.desc("id"))


PROBS = [0.0, 0.001, 0.25, 0.5, 0.995, 1.0]
COLS = ["x", "ties", "sparse", "gaps"]


@pytest.mark.parametrize("path", ["collected", "bracketed"])
def test_exact_quantiles_equal_the_inverted_cdf_on_any_layout(table, monkeypatch, path):
    df, values = table
    if path == "bracketed":  # force the sketch-count-collect path on this small table
        monkeypatch.setattr(stable, "EXACT_ROWS", 100)
    want = {c: [_inverted_cdf(values[c], q) for q in PROBS] for c in COLS}
    for layout in _layouts(df):
        assert stable.exact_quantiles(layout, COLS, PROBS, relative_error=0.01) == want


def test_bracket_that_misses_is_opened(table, monkeypatch):
    """A sketch that lies (here: a shifted one) costs a second pass, never a wrong answer."""
    df, values = table
    monkeypatch.setattr(stable, "EXACT_ROWS", 100)
    real = type(df).approxQuantile

    def shifted(self, cols, probs, err):
        return [[v + 50.0 for v in out] for out in real(self, cols, probs, err)]

    monkeypatch.setattr(type(df), "approxQuantile", shifted)
    got = stable.exact_quantiles(df, ["x"], [0.5], relative_error=0.01)
    assert got == {"x": [_inverted_cdf(values["x"], 0.5)]}


def test_quantiles_leave_out_empty_columns_and_check_probabilities(spark):
    df = spark.createDataFrame([(1, None, 2.0)], "id long, empty double, one double")
    assert stable.exact_quantiles(df, ["empty", "one"], [0.5]) == {"one": [2.0]}
    with pytest.raises(ValueError, match=r"quantile probability 1.5 is not in \[0, 1\]"):
        stable.exact_quantiles(df, ["one"], [1.5])


def test_moments_are_bit_identical_on_any_layout_and_match_numpy(table):
    df, values = table
    results = [stable.moments(layout, COLS, ["id"]) for layout in _layouts(df)]
    assert results[0] == results[1] == results[2]
    for c in COLS:
        v = values[c][~np.isnan(values[c])]
        m = results[0][c]
        assert m.count == len(v)
        assert m.mean == pytest.approx(float(np.mean(v)), rel=1e-13)
        assert m.variance == pytest.approx(float(np.var(v, ddof=1)), rel=1e-9)
        assert (m.min, m.max) == (float(v.min()), float(v.max()))


def test_moments_of_one_value_and_of_none(spark):
    df = spark.createDataFrame([(1, 5.0, None)], "id long, a double, b double")
    out = stable.moments(df, ["a", "b"], ["id"])
    assert out == {"a": stable.Moments(count=1, mean=5.0, variance=0.0, min=5.0, max=5.0)}
