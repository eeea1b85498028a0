"""The automatic segment count's pure parts: targets, candidates, the target check and the
order of preference (the job test runs them on Spark)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from spark_clustering.jobs.autochoice import (
    EPS_MULTIPLES,
    Targets,
    assess,
    check_targets,
    choose,
    grid,
    min_points_candidates,
)


def test_default_targets_and_their_checks():
    targets, problems = check_targets({})
    assert targets == Targets(0.01, 12, 0.10, 3) and problems == []
    _, problems = check_targets({"min_share": "1%", "max_noise": -0.1, "max_segments": 2.5})
    assert problems == [
        "[targets].min_share: '1%'; accepted: a number",
        "[targets].max_noise: -0.1; accepted: in [0, 1)",
        "[targets].max_segments: 2.5; accepted: an integer in [2, 100]",
    ]
    _, problems = check_targets({"max_segments": 4, "min_segments": 5})
    assert problems == ["[targets].min_segments: 5; accepted: an integer in [2, max_segments = 4]"]


@pytest.mark.parametrize(
    ("n", "expected"), [(300, [10]), (3000, [10, 15]), (23_570, [24, 118]), (10**6, [200])]
)
def test_min_points_tied_to_the_smallest_share(n, expected):
    assert min_points_candidates(n, Targets()) == expected


def test_grids():
    t = Targets(max_segments=5)
    assert grid("kmeans", {"k": "auto"}, 1000, t) == [{"k": k} for k in (3, 4, 5)]
    assert grid("gmm", {"k": "auto"}, 3, t) == [{"k": 2}]  # never more clusters than rows - 1
    dbscan = grid("dbscan", {"minPoints": "auto", "eps": "auto"}, 23_570, t)
    assert len(dbscan) == 2 * len(EPS_MULTIPLES) and dbscan[0] == {
        "minPoints": 24,
        "epsMultiple": 1.0,
    }
    assert grid("dbscan", {"minPoints": "auto", "eps": 0.5}, 300, t) == [
        {"minPoints": 10, "eps": 0.5}
    ]
    assert grid("dbscan", {"minPoints": "auto", "eps": "auto", "epsMultiple": 3}, 300, t) == [
        {"minPoints": 10, "epsMultiple": 3.0}
    ]


def test_assess_sums_the_relative_excesses():
    t = Targets(min_share=0.1, max_segments=3, max_noise=0.1, min_segments=2)
    assert assess({0: 50, 1: 40, -1: 10}, t) == (2, 0.1, 0.4, True, 0.0)
    count, _noise, _smallest, within, violation = assess({0: 60, 1: 15, 2: 5, -1: 20}, t)
    assert (count, within) == (3, False)
    assert violation == pytest.approx((0.2 - 0.1) / 0.1 + (0.1 - 0.05) / 0.1)
    assert assess({0: 100}, t)[3:] == (False, 0.5)  # one segment is no segmentation
    assert assess({0: 50, 1: 50}, Targets())[3:] == (False, 1 / 3)  # nor two, by default


def _fake_fit(sizes_by_k):
    def fit(params):
        return SimpleNamespace(k=params.get("k"), eps=params.get("eps")), sizes_by_k(params)

    return fit


def test_choose_prefers_within_targets_then_the_criterion():
    t = Targets(min_share=0.1, max_segments=4, max_noise=0.1, min_segments=2)
    sizes = {2: {0: 50, 1: 50}, 3: {0: 40, 1: 40, 2: 20}, 4: {0: 40, 1: 40, 2: 15, 3: 5}}
    score = {2: 0.5, 3: 0.6, 4: 0.9}  # k=4 scores best but its smallest segment is 5%
    released = []
    choice = choose("kmeans", {"k": "auto"}, 100, t, fit=_fake_fit(lambda p: sizes[p["k"]]),
                    sizes=lambda out: out, criterion=lambda m, out: score[m.k],
                    release=lambda m, out: released.append(out))  # fmt: skip
    assert choice.params == {"k": 3} and choice.record["within_targets"]
    assert [c["within_targets"] for c in choice.record["candidates"]] == [True, True, False]
    # the losers were released, the chosen output was not
    assert choice.clustered == sizes[3] and sizes[3] not in released and len(released) == 2
    # GMM: the lowest criterion (BIC) wins
    choice = choose("gmm", {"k": "auto"}, 100, t, fit=_fake_fit(lambda p: sizes[p["k"]]),
                    sizes=lambda out: out, criterion=lambda m, out: score[m.k],
                    release=lambda m, out: None)  # fmt: skip
    assert choice.params == {"k": 2}


def test_choose_takes_the_closest_when_nothing_is_within_and_stops_dbscan_early(caplog):
    t = Targets(min_share=0.01, max_segments=12, max_noise=0.05, min_segments=2)
    knees = {10: SimpleNamespace(eps=0.1)}
    # noise falls as eps grows; at x3 one cluster is left: larger multiples are skipped
    by_multiple = {
        1.0: {0: 40, 1: 40, -1: 20},
        1.5: {0: 45, 1: 45, -1: 10},
        2.0: {0: 47, 1: 47, -1: 6},
        3.0: {0: 100},
    }
    fitted = []

    def sizes_of(p):
        fitted.append(p["epsMultiple"])
        return by_multiple[p["epsMultiple"]]

    choice = choose("dbscan", {"minPoints": 10, "eps": "auto"}, 100, t, fit=_fake_fit(sizes_of),
                    sizes=lambda out: out, criterion=lambda m, out: 0.5, knee=knees.__getitem__,
                    release=lambda m, out: None)  # fmt: skip
    assert fitted == [1.0, 1.5, 2.0, 3.0]
    assert choice.params["epsMultiple"] == 2.0 and not choice.record["within_targets"]
    assert math.isclose(choice.params["eps"], 0.2)
    assert "no candidate is within the targets" in caplog.text
