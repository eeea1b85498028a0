"""Segment identities across re-fits: the matching on hand-made overlap tables and profiles."""

from __future__ import annotations

import pytest

from spark_clustering.jobs.identity import (
    MatchSettings,
    Previous,
    assign_ids,
    check_settings,
    ids_of,
)

PREV = Previous(
    run_date="2026-11-01",
    run_id="r1",
    names={0: "loyal", 1: "bargain", 2: "dormant"},
    profiles={0: {"f": 10.0, "g": 1.0}, 1: {"f": 0.0, "g": 5.0}, 2: {"f": -10.0, "g": 9.0}},
    next_id=3,
)


def _events(out, kind):
    return [e for e in out["events"] if e["event"] == kind]


def test_first_run_numbers_segments_like_clusters():
    out = assign_ids([2, 0, 1, -1], None, MatchSettings())
    assert ids_of(out) == {0: 0, 1: 1, 2: 2}
    assert out["method"] == "first" and out["next_id"] == 3 and out["previous"] is None
    assert [s["name"] for s in out["segments"]] == ["segment 0", "segment 1", "segment 2"]


def test_renumbered_clusters_keep_their_segment_ids_and_names():
    # the same customers, clusters numbered differently; noise overlaps noise
    overlap = {(5, 1): 40, (3, 0): 50, (9, 2): 30, (-1, -1): 7, (5, -1): 2}
    out = assign_ids([3, 5, 9, -1], PREV, MatchSettings(), overlap=overlap, customers=129)
    assert out["method"] == "overlap"
    assert ids_of(out) == {3: 0, 5: 1, 9: 2}
    assert {s["segment_id"]: s["name"] for s in out["segments"]} == PREV.names
    assert out["counts"] == {"kept": 3, "new": 0, "split": 0, "retired": 0, "merged": 0}
    (kept,) = [e for e in _events(out, "kept") if e["segment_id"] == 1]
    assert kept["jaccard"] == pytest.approx(40 / 42)


def test_a_split_keeps_the_larger_part_and_records_the_new_one():
    # segment 0 (100 customers) splits into clusters 0 (60) and 1 (40)
    overlap = {(0, 0): 60, (1, 0): 40, (2, 1): 80, (3, 2): 70}
    out = assign_ids([0, 1, 2, 3], PREV, MatchSettings(), overlap=overlap, customers=250)
    ids = ids_of(out)
    assert ids[0] == 0 and ids[2] == 1 and ids[3] == 2 and ids[1] == 3  # next unused id
    (split,) = _events(out, "split")
    assert split == {"event": "split", "segment_id": 3, "from": [{"segment_id": 0, "share": 1.0}]}
    assert out["next_id"] == 4


def test_a_merge_retires_one_segment_into_the_kept_one():
    overlap = {(0, 0): 50, (0, 1): 45, (1, 2): 70}
    out = assign_ids([0, 1], PREV, MatchSettings(), overlap=overlap, customers=165)
    assert ids_of(out) == {0: 0, 1: 2}
    (merged,) = _events(out, "merged")
    assert merged["segment_id"] == 1 and merged["name"] == "bargain"
    assert merged["into"] == [{"segment_id": 0, "share": 1.0}]


def test_weak_overlap_is_no_match():
    # cluster 0 holds a fifth of segment 0 and a fifth of segment 1: Jaccard 0.2 < 0.3
    overlap = {(0, 0): 20, (0, 1): 20, (1, 0): 80, (2, 1): 80, (3, 2): 90}
    out = assign_ids([0, 1, 2, 3], PREV, MatchSettings(), overlap=overlap, customers=290)
    ids = ids_of(out)
    assert ids[1] == 0 and ids[2] == 1 and ids[3] == 2 and ids[0] == 3
    (new,) = _events(out, "new") + _events(out, "split")
    assert new["segment_id"] == 3 and {o["segment_id"] for o in new["from"]} == {0, 1}


def test_profiles_decide_when_too_few_customers_are_in_both_runs():
    # a new customer base (no overlap): matched by mean profiles in standard deviations
    profiles = {7: {"f": 9.5, "g": 1.2}, 8: {"f": -10.2, "g": 8.9}, 9: {"f": 30.0, "g": -4.0}}
    scale = {"f": 10.0, "g": 4.0}
    out = assign_ids(
        [7, 8, 9], PREV, MatchSettings(), overlap={(7, 0): 3}, customers=1000,
        profiles=profiles, scale=scale,
    )  # fmt: skip
    assert out["method"] == "profile"
    assert ids_of(out) == {7: 0, 8: 2, 9: 3}
    assert [e["segment_id"] for e in _events(out, "retired")] == [1]
    (kept,) = [e for e in _events(out, "kept") if e["segment_id"] == 0]
    assert kept["distance"] == pytest.approx(((0.05**2 + 0.05**2) / 2) ** 0.5)


def test_matching_off_gives_fresh_ids_after_the_previous_ones():
    out = assign_ids([0, 1], PREV, MatchSettings(match="off"), overlap={(0, 0): 9})
    assert ids_of(out) == {0: 3, 1: 4} and out["method"] == "off" and out["events"] == []


def test_configured_names_win():
    overlap = {(0, 0): 50}
    out = assign_ids([0], PREV, MatchSettings(names={0: "VIP"}), overlap=overlap, customers=50)
    assert out["segments"][0]["name"] == "VIP"


def test_settings_are_checked_with_every_problem_named():
    settings, problems = check_settings({"min_jaccard": 0.4, "names": {"2": "VIP"}})
    assert problems == [] and settings.min_jaccard == 0.4 and settings.names == {2: "VIP"}
    _, problems = check_settings(
        {"match": "fuzzy", "min_jaccard": 0, "split_share": "x", "names": {"a": "b"}, "bad": 1}
    )
    assert problems == [
        "[segments].bad: unknown key; accepted: match, max_profile_distance, min_common, "
        "min_jaccard, names, split_share",
        "[segments].match: 'fuzzy'; accepted: auto, overlap, profile, off",
        "[segments].min_jaccard: 0; accepted: in (0, 1]",
        "[segments].split_share: 'x'; accepted: a number",
        "[segments].names.a: 'b'; accepted: a segment id >= 0 = a non-empty name",
    ]
