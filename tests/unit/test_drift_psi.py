"""Population stability index and drift thresholds, on hand-made shares."""

from __future__ import annotations

import math

import pytest

from spark_clustering.jobs.drift import Thresholds, psi


def test_psi_of_equal_shares_is_zero_and_grows_with_the_shift():
    ref = [0.1] * 10
    assert psi(ref, ref) == 0.0
    mild = [0.08, 0.08, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.12, 0.12]
    strong = [0.02, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.16, 0.2, 0.2]
    assert 0 < psi(ref, mild) < 0.1 < 0.25 < psi(ref, strong)
    # the textbook formula, term by term
    want = sum((a - e) * math.log(a / e) for e, a in zip(ref, strong, strict=True))
    assert psi(ref, strong) == pytest.approx(want)


def test_empty_bins_are_floored_not_infinite():
    assert math.isfinite(psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]))


def test_psi_needs_the_same_bins():
    with pytest.raises(ValueError, match="3 reference bins and 2 scored bins"):
        psi([0.2, 0.3, 0.5], [0.5, 0.5])


def test_thresholds_are_checked():
    Thresholds(0.1, 0.05).check()
    with pytest.raises(ValueError, match=r"--drift-psi 0.0; accepted: a finite number > 0"):
        Thresholds(0.0).check()
    with pytest.raises(ValueError, match=r"--drift-noise 1.5; accepted: in \(0, 1\]"):
        Thresholds(noise_increase=1.5).check()
