"""The segment job end to end through ``main([...])`` on small generated features: the published
run of each date, the fitted pipeline, report and summary, a rerun replacing only its run date,
and a run failing mid-way leaving the previous run published and nothing of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.metrics import adjusted_rand_score

from browser import assert_reads_well
from segment_data import NAMES, blobs, write_config, write_features
from spark_clustering.jobs import segment
from spark_clustering.jobs.publish import current_run, read_assignments
from spark_clustering.jobs.segment import main

pytestmark = [pytest.mark.spark, pytest.mark.slow]

D1, D2 = "2026-11-01", "2026-11-08"
N_PER = 100


@pytest.fixture(scope="module")
def data(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("segment")
    ids, x, truth = blobs(N_PER, seed=1)
    features = write_features(spark, root / "features", ids, x)
    out = root / "out"
    config = write_config(root / "segment.toml", features, str(out))
    assert main(["--config", config, "--run-date", D1]) == 0
    return root, out, config, dict(zip(ids.tolist(), truth.tolist(), strict=True))


def _files(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def _no_temporaries(out: Path) -> None:
    hidden = [p for p in out.rglob(".*") if p.is_dir()]
    assert not hidden, f"temporary directories left: {hidden}"
    assert not list(out.glob("runs/*/_lock")), "a lock left behind"
    for date_dir in out.glob("runs/run_date=*"):
        run = current_run(None, str(out), date_dir.name.split("=")[1])
        assert run is not None
        # kept: the published run and at most the one it replaced
        assert len(list(date_dir.glob("run-*"))) <= 2 and Path(run.path).is_dir()


def _run(out: Path, date: str):
    run = current_run(None, str(out), date)
    assert run is not None, f"no published run of {date}"
    return run


def _summary(out: Path, date: str) -> dict:
    return json.loads(Path(_run(out, date).summary).read_text())


def test_outputs(spark, data, tmp_path):
    _, out, _, truth = data
    table = read_assignments(spark, str(out))
    assert table.columns == [
        "customer_id", "cluster", "segment_id", "is_noise", "is_core", "run_id", "model_version",
        "run_date",
    ]  # fmt: skip
    # the first run under this output: segment id = cluster id
    assert all(r["segment_id"] == r["cluster"] for r in table.collect())
    rows = table.collect()
    assert len(rows) == 3 * N_PER
    assert {str(r["run_date"]) for r in rows} == {D1}
    assert all(r["is_noise"] == (r["cluster"] == -1) for r in rows)
    summary = _summary(out, D1)
    assert {r["run_id"] for r in rows} == {summary["run_id"]}
    assert {r["model_version"] for r in rows} == {summary["model_version"]}
    # three separated blobs: the auto eps recovers them
    labels = [r["cluster"] for r in sorted(rows, key=lambda r: r["customer_id"])]
    expected = [truth[i] for i in sorted(truth)]
    assert summary["n_clusters"] == 3
    clustered = [i for i, label in enumerate(labels) if label != -1]
    assert len(clustered) > 0.9 * len(labels)
    assert (
        adjusted_rand_score([expected[i] for i in clustered], [labels[i] for i in clustered]) == 1
    )
    assert summary["eps"]["auto"] and summary["eps"]["value"] == summary["eps"]["suggested"] > 0
    assert summary["metrics"]["silhouette"] > 0.5
    assert sum(int(v) for v in summary["cluster_sizes"].values()) == 3 * N_PER
    assert set(summary["stages"]["seconds"]) >= {"features", "reduce (pca)", "cluster (dbscan)"}
    assert summary["stages"]["rows"]["features"] == 3 * N_PER
    # profiles are of the original features, in their units: blob 1 has recency near 6
    profiles = {p["cluster"]: p for p in summary["profiles"]}
    assert summary["profile_features"] == NAMES
    means = sorted(round(p["mean"]["recency"]) for p in profiles.values() if p["cluster"] != -1)
    assert means == [0, 0, 6]
    report = Path(_run(out, D1).report).read_text()
    # size chart, lift heatmap, scatter and k-distance graph, all loading in a real browser
    assert report.count("data:image/png;base64,") == 4
    assert_reads_well(Path(_run(out, D1).report), tmp_path, images=4)
    assert "Mean per segment" in report and "Median per segment" in report
    assert summary["model_version"] in report
    model = Path(_run(out, D1).model)
    meta = json.loads((model / "pipeline.json").read_text())
    assert meta["reducer"] == "pca" and meta["clusterer"] == "dbscan"
    assert (model / "reducer" / "metadata").is_dir() and (model / "clusterer" / "metadata").is_dir()
    _no_temporaries(out)


def test_rerun_replaces_only_its_run_date(spark, data):
    root, out, _, _ = data
    kmeans = write_config(
        root / "kmeans.toml",
        str(root / "features"),
        str(out),
        clusterer='algorithm = "kmeans"\nparams = { k = 3, seed = 1 }',
        tracking=f'backend = "mlflow"\nexperiment = "seg-test"\ntrial = "kmeans-run"\n'
        f'tracking_uri = "sqlite:///{root}/mlflow.db"\nartifact_location = "{root}/artifacts"',
    )
    # as if the prepare job had written the features: its record beside them
    prep = {"job": "prepare", "run_id": "prep-1", "tracking": {"run": {"run_id": "mlflow-prep"}}}
    (root / "summary.json").write_text(json.dumps(prep))
    assert main(["--config", kmeans, "--run-date", D2]) == 0
    d2 = Path(_run(out, D2).assignments)
    before_d2 = _files(d2)
    old_d1 = _summary(out, D1)
    _, _, config, _ = data
    assert main(["--config", config, "--run-date", D1]) == 0
    assert _files(d2) == before_d2
    assert Path(_run(out, D2).assignments) == d2
    table = read_assignments(spark, str(out))
    by_date = {str(r["run_date"]): r["n"] for r in table.groupBy("run_date").count()
               .withColumnRenamed("count", "n").collect()}  # fmt: skip
    assert by_date == {D1: 3 * N_PER, D2: 3 * N_PER}
    new_d1 = _summary(out, D1)
    assert new_d1["run_id"] != old_d1["run_id"]
    d1_ids = {r["run_id"] for r in table.where(f"run_date = '{D1}'").select("run_id").collect()}
    assert d1_ids == {new_d1["run_id"]}
    kmeans_cols = spark.read.parquet(str(d2)).columns
    assert "distance" in kmeans_cols and "is_core" not in kmeans_cols
    _no_temporaries(out)
    _logged_to_the_trial(root, _summary(out, D2))


def _logged_to_the_trial(root: Path, summary: dict) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("seg-test")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.run_name == "kmeans-run" and parent.info.status == "FINISHED"
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # the job's run id and the MLflow run name each other; the prepare run is named too
    assert parent.data.tags["run_id"] == summary["run_id"]
    assert summary["tracking"]["run"]["run_id"] == parent.info.run_id
    assert summary["tracking"]["run"]["experiment_id"] == exp.experiment_id
    assert parent.data.tags["prepare.run_id"] == summary["prepare"]["run_id"] == "prep-1"
    assert parent.data.tags["prepare.tracking_run_id"] == "mlflow-prep"
    assert parent.data.tags["spark.version"] and parent.data.tags["mlflow.user"]
    params = {k: v for r in runs for k, v in r.data.params.items()}
    assert params["config.clusterer"] == "kmeans" and params["config.clusterer_params.k"] == "3"
    # each metric once, on the trial: no Evaluation child with copies
    assert sorted(r.info.run_name for r in runs if r is not parent) == ["Training"]
    metrics = parent.data.metrics
    assert metrics["silhouette"] == pytest.approx(summary["metrics"]["silhouette"])
    assert len(client.get_metric_history(parent.info.run_id, "silhouette")) == 1
    # the features as an MLflow dataset: absolute URI, digest, schema
    (given,) = parent.inputs.dataset_inputs
    assert json.loads(given.dataset.source)["uri"] == (root / "features").as_uri()
    assert json.loads(given.dataset.schema)["mlflow_colspec"][0]["name"] == "customer_id"
    assert json.loads(given.dataset.profile)["rows"] == summary["customers"]
    artifacts = {
        a.path.rsplit("/", 1)[-1] for r in runs for a in client.list_artifacts(r.info.run_id)
    }
    # D2 re-fits D1's segments: the segment record and the transitions go with the trial
    assert {"report.html", "summary.json", "scatter.png", "segments.json",
            "transitions.csv"} <= artifacts  # fmt: skip
    assert metrics["segments_kept"] == summary["segments"]["counts"]["kept"]


def test_failure_mid_run_keeps_the_previous_run(data, monkeypatch, capsys):
    _, out, config, _ = data
    published = _run(out, D1)
    before = _files(out / "runs" / f"run_date={D1}")

    def fail(summary, local_dir):
        # by now the model and the assignments are written into the run's own folder
        mine = out / "runs" / f"run_date={D1}" / f"run-{summary['run_id']}"
        assert (mine / "assignments").is_dir() and (mine / "model" / "pipeline.json").is_file()
        raise RuntimeError("injected failure while writing the report")

    monkeypatch.setattr(segment, "_write_report", fail)
    assert main(["--config", config, "--run-date", D1]) == 1
    assert "injected failure" in capsys.readouterr().err
    assert _run(out, D1) == published
    # nothing of the failed run is left, the published one is untouched
    assert _files(out / "runs" / f"run_date={D1}") == before
    _no_temporaries(out)


def test_bad_config_lists_every_problem_before_spark(tmp_path, capsys, no_spark):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[input]\npath = "/nonexistent/features"\ncolour = "red"\n'
        '[clusterer]\nalgorithm = "dbscan"\nparams = { eps = -1.0, minPoints = "ten" }\n'
        "[output]\nscatter_sample = 0\n"
    )
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    for text in ("'/nonexistent/features' does not exist", "unknown key 'colour'",
                 "eps: -1.0",
                 "minPoints: 'ten'; accepted: an integer or 'auto'", "[output].path is required",
                 "scatter_sample: 0"):  # fmt: skip
        assert text in err, (text, err)
    assert "6 problem(s)" in err
