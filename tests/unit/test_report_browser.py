"""The segment report read as a person would, in headless chromium, at 3 and at 200 segments:
it renders without errors, every image loads, nothing is wider than a 1280-pixel window, the
largest segments are shown one by one with distinct colours and the rest grouped. The summaries
are built by the job's own pieces (explain's lifts and names, identity's ids, the auto record)
without Spark; tests/jobs/test_segment_auto.py opens a report the job itself wrote."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from browser import assert_reads_well, probe
from spark_clustering.jobs import charts
from spark_clustering.jobs.autochoice import selection_png
from spark_clustering.jobs.explain import lifts, names_for, top_features
from spark_clustering.jobs.identity import MatchSettings, assign_ids
from spark_clustering.jobs.report import render_report

FEATURES = ["recency_days", "frequency", "monetary", "tenure_days", "avg_basket",
            "share_grocery", "share_home", "share_electronics", "share_fashion", "share_beauty",
            "share_sports", "share_toys", "distinct_channels"]  # fmt: skip


def _summary(k: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    sizes = {c: int(s) for c, s in enumerate(sorted(rng.integers(20, 2000, size=k), reverse=True))}
    sizes[-1] = 150
    total = sum(sizes.values())
    population = {f: (1.0, 1.0) for f in FEATURES}
    profiles = []
    for c in sorted(sizes):
        mean = {f: float(rng.normal(1.0, 1.0)) for f in FEATURES}
        lift = lifts(mean, population)
        profile = {"cluster": c, "size": sizes[c], "share": sizes[c] / total, "mean": mean}
        profiles.append(
            {**profile, "median": mean, "lift": lift, "top_features": top_features(lift)}
        )
    for p, name in zip(profiles, names_for(profiles).values(), strict=True):
        p["name"] = name
    for p in profiles[1:13]:
        p.update(rule="frequency > 3.5 and monetary <= 120", conditions=[], precision=0.9,
                 recall=0.8)  # fmt: skip
    record = assign_ids([c for c in sizes if c != -1], None, MatchSettings(),
                        suggested={p["cluster"]: p["name"] for p in profiles})  # fmt: skip
    for p in profiles:
        p["segment_id"] = p["cluster"]
    auto = {
        "algorithm": "dbscan",
        "targets": {"min_share": 0.01, "max_segments": 12, "max_noise": 0.1, "min_segments": 3},
        "criterion": "silhouette (original features)",
        "candidates": [
            {
                "params": {"minPoints": 10, "epsMultiple": m, "eps": 0.1 * m},
                "n_segments": k,
                "noise_share": 0.05,
                "smallest_share": 0.01,
                "within_targets": m > 1,
                "violation": 0.0 if m > 1 else 0.5,
                "criterion": 0.3 + 0.01 * m,
            }
            for m in (1.0, 1.5, 2.0)
        ],
        "labels": [f"eps x{m:g}, minPoints 10" for m in (1.0, 1.5, 2.0)],
        "chosen": 2,
        "within_targets": True,
        "params": {"minPoints": 10, "epsMultiple": 2.0, "eps": 0.2},
    }
    return {
        "run_id": "a" * 32, "model_version": "2026-11-01-aaaaaaaa", "run_date": "2026-11-01",
        "customers": total, "n_clusters": k, "n_noise": sizes[-1],
        "cluster_sizes": {str(c): n for c, n in sizes.items()},
        "config": {"reducer": "umap", "reducer_params": {"nComponents": 3}, "clusterer": "dbscan",
                   "input_path": "/data/" + "x" * 300},  # a long path must wrap, not widen
        "metrics": {"silhouette": 0.41, "davies_bouldin": 0.8},
        "silhouette_by_cluster": {str(c): 0.4 for c in sizes if c != -1},
        "profiles": profiles, "profile_features": FEATURES, "segments": record, "auto": auto,
        "preparation": {"rows_read": 70000, "rows_kept": 69000,
                        "dropped": {"amount out of [0.0, 100000.0]": 1000}, "customers": total,
                        "features": len(FEATURES), "dropped_constant": [],
                        "dropped_correlated": ["avg_basket (|r| = 0.97 with monetary)"]},
        "tracking": {"text": "tracking: ok (12 calls recorded)"},
        "stages": {"seconds": {"features": 1.0}},
    }  # fmt: skip


@pytest.mark.parametrize("k", [3, 200])
def test_report_reads_well_in_a_browser(tmp_path, k):
    summary = _summary(k)
    selection_png(summary["auto"], str(tmp_path / "choice.png"))  # as the job draws it
    html = render_report(summary, str(tmp_path))
    report = tmp_path / "report.html"
    report.write_text(html)
    found = assert_reads_well(report, tmp_path, images=3)  # sizes, lifts, selection curve
    assert found["h2"] >= 8
    shown = min(k, charts.TOP)
    # the shown segments one by one, each with its own colour; the rest grouped in one row
    swatches = re.findall(r'class="sw" style="background:(#[0-9a-f]{6})"', html)
    assert len(set(swatches[:shown])) == shown and charts.NOISE not in swatches[:shown]
    assert (f"{k - shown} other segments" in html) == (k > shown)
    assert "frequency &gt; 3.5 and monetary &lt;= 120" in html  # rules are text, escaped
    assert ("The 188 other segments</summary>" in html) == (k == 200)
    # the profile tables have the population and the shown segments, not 200 columns
    mean_table = html.split("<h3>Mean per segment</h3>")[1].split("</thead>")[0]
    assert mean_table.count("<th>") == 2 + shown


def test_colours_are_distinct_and_grey_is_for_noise():
    sizes = {c: 1000 - c for c in range(30)} | {-1: 5}
    colour = charts.colours(sizes)
    first = charts.shown(sizes)
    assert first == list(range(charts.TOP))
    assert len({colour[c] for c in first}) == charts.TOP
    assert colour[-1] == charts.NOISE and {colour[c] for c in range(12, 30)} == {charts.OTHER}
    assert charts.NOISE not in charts.PALETTE and charts.OTHER not in charts.PALETTE
    greys = [c for c in charts.PALETTE if len({c[1:3], c[3:5], c[5:7]}) == 1]
    assert greys == []
    json.dumps(colour)


def test_the_probe_sees_what_a_reader_would(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head></head><body><div style="width: 2000px">wide</div>'
        '<img alt="broken" src="data:image/png;base64,AAAA"></body></html>'
    )
    found = probe(page, tmp_path)
    assert found["broken"] == ["broken"] and found["width"] > 1280 and "DIV" in found["wide"]
    assert any("broken" in e for e in found["errors"])
    with pytest.raises(AssertionError):
        assert_reads_well(page, tmp_path, images=1)
