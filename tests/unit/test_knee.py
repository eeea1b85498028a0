"""Kneedle on curves whose knee is known."""

from __future__ import annotations

import numpy as np
import pytest

from spark_clustering.neighbors import knee_of_sorted, kneedle


def test_piecewise_linear_knee_is_the_corner():
    # flat-ish then steep: the corner at index 700 is the point farthest below the chord
    y = np.concatenate([np.linspace(0.0, 1.0, 701), np.linspace(1.0 + 0.1, 31.0, 300)])
    assert kneedle(y) == 700


def test_exponential_knee_matches_closed_form():
    # y = exp(a x) on [0, 1]: x_n - y_n is largest where a e^{ax}/(e^a - 1) = 1
    a = 8.0
    x = np.linspace(0.0, 1.0, 100_001)
    y = np.exp(a * x)
    expected = np.log((np.exp(a) - 1.0) / a) / a
    assert x[kneedle(y)] == pytest.approx(expected, abs=1e-4)


def test_flat_and_tiny_curves():
    assert kneedle(np.ones(50)) == 0
    assert kneedle(np.array([1.0, 2.0])) == 0
    with pytest.raises(ValueError, match="one-dimensional"):
        kneedle(np.ones((3, 3)))


def test_trim_ignores_extreme_tail():
    rng = np.random.default_rng(0)
    body = np.sort(rng.exponential(1.0, 10_000))
    tail_a = np.concatenate([body, [50.0] * 20])
    tail_b = np.concatenate([body, [500.0] * 20])  # a wilder top 0.2% does not move the knee
    assert knee_of_sorted(np.sort(tail_a)) == pytest.approx(knee_of_sorted(np.sort(tail_b)))
    # untrimmed, the knee follows the maximum
    assert knee_of_sorted(np.sort(tail_b), trim=1.0) > knee_of_sorted(np.sort(tail_a), trim=1.0)


def test_knee_params_checked():
    with pytest.raises(ValueError, match="trim=0"):
        knee_of_sorted(np.arange(10.0), trim=0)
    with pytest.raises(ValueError, match="grid=2"):
        knee_of_sorted(np.arange(10.0), grid=2)
