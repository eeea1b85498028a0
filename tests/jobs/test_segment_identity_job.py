"""Scheduled re-fits: segment ids carried over from the previous run date, lineage, transitions,
on two generated snapshots of the same customer base (issue #17)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from spark_clustering.features.generate import Snapshot, generate_transactions
from spark_clustering.jobs.identity import FILE, ids_of
from spark_clustering.jobs.publish import current_run
from spark_clustering.jobs.segment import main

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
D1, D2, D3 = "2026-11-01", "2026-12-01", "2027-01-01"
CUSTOMERS = 800


def _config(path: Path, data: Path, out: Path, segments: str = "") -> str:
    path.write_text(
        f'[input]\npath = "{data / "transactions"}"\nkind = "raw"\n'
        f'spec = "{ROOT / "examples" / "prepare.toml"}"\n'
        '[reducer]\nalgorithm = "pca"\nparams = { k = 4 }\n'
        '[clusterer]\nalgorithm = "kmeans"\nparams = { k = 4, seed = 3 }\n'
        "[evaluation]\nsample_size = 300\nrepeats = 1\n"
        f'[output]\npath = "{out}"\nscatter_sample = 200\n{segments}'
    )
    return str(path)


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """Snapshot 0 segmented on D1, snapshot 1 (5% lost, 5% new, new transactions) on D2."""
    root = tmp_path_factory.mktemp("identity")
    out = root / "segments"
    for n, date in ((0, D1), (1, D2)):
        data = root / f"snapshot{n}"
        generate_transactions(spark, CUSTOMERS, str(data), seed=4, snapshot=Snapshot(n))
        config = _config(root / f"segment{n}.toml", data, out)
        assert main(["--config", config, "--run-date", date, "--gpu", "off"]) == 0
    return root, out


def _record(out: Path, date: str) -> dict:
    run = current_run(None, str(out), date)
    assert run is not None
    return json.loads((Path(run.model) / FILE).read_text())


def _assignments(out: Path, date: str) -> pd.DataFrame:
    run = current_run(None, str(out), date)
    assert run is not None
    return pd.read_parquet(run.assignments)


def test_snapshots_share_most_customers(spark, runs):
    root, _ = runs
    a = set(pd.read_parquet(root / "snapshot0" / "segments").customer_id)
    b = set(pd.read_parquet(root / "snapshot1" / "segments").customer_id)
    assert 0.9 * CUSTOMERS < len(a & b) < CUSTOMERS  # some lost ...
    assert max(b) > CUSTOMERS  # ... and some new (ids after the base's)


def test_refit_records_the_match_and_the_assignments_carry_it(runs):
    _, out = runs
    first, second = _record(out, D1), _record(out, D2)
    assert first["method"] == "first" and ids_of(first) == {c: c for c in range(4)}
    assert second["method"] == "overlap" and second["previous"]["run_date"] == D1
    # every cluster has an id; every previous segment is kept, or retired/merged
    assert len(second["segments"]) == 4
    kept = {e["segment_id"] for e in second["events"] if e["event"] == "kept"}
    gone = {e["segment_id"] for e in second["events"] if e["event"] in ("retired", "merged")}
    assert kept | gone == {0, 1, 2, 3} and not kept & gone
    fresh = {s["segment_id"] for s in second["segments"] if s["status"] == "new"}
    assert fresh == set(range(4, second["next_id"]))
    # the assignments carry the ids the record gives each cluster; noise stays -1
    a2 = _assignments(out, D2)
    mapping = {**ids_of(second), -1: -1}
    assert (a2.segment_id == a2.cluster.map(mapping)).all()


@pytest.fixture(scope="module")
def blob_runs(spark, tmp_path_factory):
    """Three well separated groups of customers, re-fitted a week later on new measurements of
    90% of them plus 30 new ones, by another clusterer that numbers its clusters otherwise
    (DBSCAN numbers by size, KMeans by centre)."""
    import numpy as np

    from segment_data import blobs, write_config, write_features

    root = tmp_path_factory.mktemp("blobs")
    out = root / "segments"
    ids, x, truth = blobs(100, seed=1)
    write_features(spark, root / "f1", ids, x)
    keep = np.random.default_rng(5).random(len(ids)) > 0.1
    _, x2, _ = blobs(100, seed=2)
    new_ids = np.arange(1000, 1030)
    ids2 = np.concatenate([ids[keep], new_ids])
    x2 = np.vstack([x2[keep], x2[:30]])
    write_features(spark, root / "f2", ids2, x2)
    c1 = write_config(root / "d1.toml", str(root / "f1"), str(out))
    c2 = write_config(root / "d2.toml", str(root / "f2"), str(out),
                      clusterer='algorithm = "kmeans"\nparams = { k = 3, seed = 1 }')  # fmt: skip
    assert main(["--config", c1, "--run-date", D1]) == 0
    assert main(["--config", c2, "--run-date", D2]) == 0
    return out, dict(zip(ids.tolist(), truth.tolist(), strict=True))


def test_refit_keeps_every_segment_id(blob_runs):
    out, _ = blob_runs
    second = _record(out, D2)
    assert second["method"] == "overlap" and second["counts"]["kept"] == 3
    assert second["next_id"] == 3 and all(s["jaccard"] > 0.8 for s in second["segments"])
    # the ids follow the customers, whatever number each clusterer gave their cluster
    a1, a2 = _assignments(out, D1), _assignments(out, D2)
    both = a1.merge(a2, on="customer_id", suffixes=("_1", "_2"))
    both = both[(both.segment_id_1 != -1) & (both.segment_id_2 != -1)]
    assert len(both) > 200 and (both.segment_id_1 == both.segment_id_2).all()
    # the names generated from the first run's features (jobs/explain.py) are kept
    first = {s["segment_id"]: s["name"] for s in _record(out, D1)["segments"]}
    names = {s["segment_id"]: s["name"] for s in second["segments"]}
    assert names == first and len(set(names.values())) == 3
    assert not any(n.startswith("segment ") for n in names.values()), names


def test_transitions_equal_a_pandas_count(runs):
    _, out = runs
    summary = json.loads(Path(current_run(None, str(out), D2).summary).read_text())
    got = summary["transitions"]
    assert (got["from_run_date"], got["to_run_date"]) == (D1, D2)
    a1, a2 = _assignments(out, D1), _assignments(out, D2)
    merged = a1[["customer_id", "segment_id"]].merge(
        a2[["customer_id", "segment_id"]], on="customer_id", how="outer", suffixes=("_f", "_t")
    )
    expected = merged.groupby(["segment_id_f", "segment_id_t"], dropna=False).size()
    want = {
        (None if pd.isna(f) else int(f), None if pd.isna(t) else int(t)): int(n)
        for (f, t), n in expected.items()
    }
    have = {(r["from_segment"], r["to_segment"]): r["customers"] for r in got["rows"]}
    assert have == want
    assert any(k[0] is None for k in have) and any(k[1] is None for k in have)  # new, lost
    # written as data next to the run, and shown in the report
    run = current_run(None, str(out), D2)
    table = pd.read_parquet(Path(run.path) / "transitions")
    assert int(table.customers.sum()) == len(merged)
    report = Path(run.report).read_text()
    assert "Transitions since the previous run" in report and "lost" in report


def test_transitions_command_prints_the_matrix(spark, runs):
    from spark_clustering.cli import main as cli

    _, out = runs
    text = io.StringIO()
    with redirect_stdout(text):
        assert cli(["transitions", "--output", str(out), "--format", "json"]) == 0
    printed = json.loads(text.getvalue())
    summary = json.loads(Path(current_run(None, str(out), D2).summary).read_text())
    assert printed == summary["transitions"]
    text = io.StringIO()
    with redirect_stdout(text):
        assert cli(["transitions", "--output", str(out), "--from", D1, "--to", D2]) == 0
    table = text.getvalue().splitlines()
    assert table[0] == f"customers from {D1} (rows) to {D2} (columns)"
    assert table[1].split()[-2:] == ["lost", "total"] and table[-2].split()[0] == "new"


def test_transitions_command_rejects_unknown_dates(spark, runs, capsys):
    from spark_clustering.cli import main as cli

    _, out = runs
    assert cli(["transitions", "--output", str(out), "--from", "2020-01-01"]) == 2
    err = capsys.readouterr().err
    assert "--from 2020-01-01: no published run; published: ['2026-11-01', '2026-12-01']" in err


def test_profiles_match_a_new_customer_base(spark, runs):
    """Matched by segment profiles (what auto does when too few customers are in common)."""
    root, out = runs
    config = _config(root / "profile.toml", root / "snapshot1", out,
                     "[segments]\nmatch = \"profile\"\nmax_profile_distance = 0.5\n")  # fmt: skip
    assert main(["--config", config, "--run-date", D3, "--gpu", "off"]) == 0
    record = _record(out, D3)
    assert record["method"] == "profile" and record["previous"]["run_date"] == D2
    # the same data as D2, so the same profiles: every segment kept at distance 0
    assert record["counts"]["kept"] == 4
    assert all(s["distance"] == pytest.approx(0.0, abs=1e-9) for s in record["segments"])
    assert ids_of(record) == {
        c: s for c, s in ids_of(_record(out, D2)).items()
    }  # the same clusters, the same ids


def _score(model: str, data: Path, out: Path, capsys) -> tuple[int, dict, str]:
    from spark_clustering.jobs.score import main as score

    code = score(["--model", model, "--input", str(data / "transactions"), "--output", str(out),
                  "--run-date", "2026-12-15", "--gpu", "off"])  # fmt: skip
    summary = json.loads((out / "run_date=2026-12-15" / "_score_summary.json").read_text())
    return code, summary, capsys.readouterr().out


def test_scoring_the_fitted_customers_does_not_drift(spark, runs, capsys):
    root, out = runs
    model = current_run(None, str(out), D2).model
    code, summary, printed = _score(model, root / "snapshot1", root / "scored-same", capsys)
    assert code == 0 and "drift" not in printed.split("\n", 1)[-1]
    found = summary["drift"]
    assert found["drifted"] is False and found["reasons"] == []
    assert max(found["psi"].values()) < 1e-9  # the very customers the model was fitted on
    assert set(found["fit_psi"]) == {"distance"}
    scored = pd.read_parquet(root / "scored-same" / "run_date=2026-12-15")
    fitted = _assignments(out, D2)
    merged = scored.merge(fitted, on="customer_id", suffixes=("", "_fit"))
    assert len(merged) == len(fitted) and (merged.segment_id == merged.segment_id_fit).all()


def test_a_shifted_segment_is_flagged_as_drift_and_still_scored(spark, runs, capsys):
    root, out = runs
    shifted = root / "shifted"
    generate_transactions(spark, CUSTOMERS, str(shifted), seed=4,
                          snapshot=Snapshot(1, shift_segment="family_regulars"))  # fmt: skip
    model = current_run(None, str(out), D2).model
    code, summary, printed = _score(model, shifted, root / "scored-shifted", capsys)
    assert code == 3  # drift.EXIT_DRIFT: the assignments are written all the same
    assert "score: drift: " in printed and "(exit code 3)" in printed
    found = summary["drift"]
    # a quarter of the customers spend three times more per basket: the basket drifts, and
    # nothing else about them changed (same transactions, dates, categories)
    assert found["drifted"] and found["reasons"][0].startswith("avg_basket: PSI ")
    assert found["psi"]["avg_basket"] > 0.25 and found["psi"]["monetary"] > 0.01
    assert found["psi"]["recency_days"] == found["psi"]["share_grocery"] == 0.0
    assert len(pd.read_parquet(root / "scored-shifted" / "run_date=2026-12-15")) > 0.9 * CUSTOMERS


def test_history_prints_the_timeline_with_drift_flags(runs, capsys):
    from spark_clustering.cli import main as cli

    root, out = runs
    model = current_run(None, str(out), D2).model
    _score(model, root / "snapshot1", root / "scored-history", capsys)  # the fitted customers
    assert cli(["history", "--output", str(out), "--scored", str(root / "scored-history")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["segment", "name", D1, D2]
    record = _record(out, D2)
    for s in record["segments"]:  # every segment of D2, with its customers in D2
        row = next(ln for ln in lines if ln.split()[0] == str(s["segment_id"]))
        size = json.loads(Path(current_run(None, str(out), D2).summary).read_text())[
            "cluster_sizes"
        ][str(s["cluster"])]
        assert str(size) in row.split()
    assert any(ln.startswith("matched by") and "overlap" in ln for ln in lines)
    scored = [ln for ln in lines if ln.startswith("scored 2026-12-15")]
    assert len(scored) == 1 and scored[0].endswith("no drift")
    # the report of each run links to the previous run's report, which exists
    import re

    report = Path(current_run(None, str(out), D2).report)
    (link,) = re.findall(r'previous run <a href="([^"]+)"', report.read_text())
    assert (report.parent / link).resolve() == Path(current_run(None, str(out), D1).report)
