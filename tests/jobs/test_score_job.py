"""The score job end to end through ``main([...])``: new customers placed into the segments of a
saved segment pipeline, the partition written like segment's, an idempotent rerun, and clear
non-zero exits on a bad model path or bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segment_data import CENTRES, blobs, write_config, write_features
from spark_clustering.jobs import segment
from spark_clustering.jobs.publish import current_run, read_assignments
from spark_clustering.jobs.score import main

pytestmark = [pytest.mark.spark, pytest.mark.slow]

DATE = "2026-11-15"
FAR = np.array([[30.0, -30.0, 30.0, -30.0], [-40.0, 40.0, -40.0, 40.0]])


@pytest.fixture(scope="module")
def fitted(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    ids, x, _ = blobs(80, seed=2)
    features = write_features(spark, root / "features", ids, x)
    out = root / "segments"
    assert segment.main(["--config", write_config(root / "s.toml", features, str(out)),
                         "--run-date", "2026-11-01"]) == 0  # fmt: skip
    training = read_assignments(spark, str(out)).toPandas().sort_values("customer_id")
    # new customers: close to the blob centres (inside the dense cores), and two far from all
    rng = np.random.default_rng(9)
    new_x = np.vstack([np.repeat(CENTRES, 10, axis=0) + rng.normal(scale=0.1, size=(30, 4)), FAR])
    new_ids = np.concatenate([np.arange(10_000, 10_030), [20_000, 20_001]])
    new = write_features(spark, root / "new", new_ids, new_x)
    return (
        root,
        out,
        new,
        (x, training["cluster"].to_numpy()),
        dict(zip(new_ids, new_x, strict=True)),
    )


def test_scores_new_customers_into_existing_segments(spark, fitted):
    root, out, new, (x, train_labels), new_points = fitted
    table = root / "scored"
    # 30 customers at the blob centres and two far away are not the fitted distribution:
    # scored all the same, and flagged as drift (exit code 3, see test_segment_identity_job)
    assert main(["--model", str(out), "--input", new, "--output", str(table),
                 "--run-date", DATE]) == 3  # fmt: skip
    rows = spark.read.parquet(str(table)).collect()
    assert len(rows) == len(new_points)
    assert {str(r["run_date"]) for r in rows} == {DATE}
    run = current_run(None, str(out), "2026-11-01")
    assert run is not None
    meta = json.loads((Path(run.model) / "pipeline.json").read_text())
    assert {r["model_version"] for r in rows} == {meta["model_version"]}
    for r in rows:
        point = new_points[r["customer_id"]]
        if r["customer_id"] >= 20_000:
            assert r["cluster"] == -1 and r["is_noise"], r
        else:
            # a customer near a blob centre lands in the segment of its nearest training customer
            nearest = train_labels[np.argmin(((x - point) ** 2).sum(axis=1))]
            assert r["cluster"] == nearest != -1, r
    summary = json.loads((table / f"run_date={DATE}" / "_score_summary.json").read_text())
    assert summary["customers"] == len(new_points) and summary["n_noise"] == 2
    assert summary["drift"]["drifted"] and summary["drift"]["psi"]["recency"] > 0.25
    assert all(r["segment_id"] == r["cluster"] for r in rows)  # the first run's ids


def test_rerun_is_idempotent(spark, fitted):
    root, out, new, _, _ = fitted
    table = root / "rerun"
    # a run date's folder names its published run's model
    date_dir = str(out / "runs" / "run_date=2026-11-01")
    args = ["--model", date_dir, "--input", new, "--output", str(table), "--run-date", DATE,
            "--no-drift-check"]  # fmt: skip
    assert main(args) == 0
    first = spark.read.parquet(str(table)).drop("run_id").toPandas()
    assert main(args) == 0
    second = spark.read.parquet(str(table)).drop("run_id").toPandas()
    key = ["customer_id"]
    assert (
        first.sort_values(key)
        .reset_index(drop=True)
        .equals(second.sort_values(key).reset_index(drop=True))
    )
    assert [p.name for p in table.iterdir()] == [f"run_date={DATE}"]
    summary = json.loads((table / f"run_date={DATE}" / "_score_summary.json").read_text())
    assert summary["drift"] == {"checked": False, "why": "off"}


def test_bad_model_or_input_exits_non_zero(fitted, tmp_path, capsys):
    root, out, new, _, _ = fitted
    assert main(["--model", str(tmp_path), "--input", new, "--output", str(tmp_path / "o")]) == 2
    assert "is not a saved segmentation pipeline" in capsys.readouterr().err
    assert main(["--model", str(out), "--input", str(root / "s.toml"), "--output",
                 str(tmp_path / "o")]) != 0  # fmt: skip
    assert "error: score" in capsys.readouterr().err
    assert main(["--model", str(out), "--input", new, "--output", str(tmp_path / "o"),
                 "--run-date", "yesterday"]) == 2  # fmt: skip
    assert "'yesterday' is not a date" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
