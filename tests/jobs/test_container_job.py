"""The training container's entry point on a temporary ``/opt/ml`` tree with the ``SM_*``
variables set, as SageMaker runs it: hyperparameters onto the segment config, the saved pipeline
in the model folder, assignments, report and summary in the output folder, the metric lines the
job's metric definitions match, the trial logged to MLflow under the training job's name, and a
failure written where SageMaker reads it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from segment_data import blobs, write_features
from spark_clustering.jobs import container

pytestmark = [pytest.mark.spark, pytest.mark.slow]

JOB = "segment-261206-120000-ab12"
ROOT = Path(__file__).resolve().parents[2]


def _ml_tree(tmp_path: Path, spark, hyperparameters: dict[str, str]) -> tuple[Path, dict]:
    ml = tmp_path / "opt-ml"
    ids, x, _ = blobs(100, seed=3)
    write_features(spark, ml / "input" / "data" / "features", ids, x)
    config_channel = ml / "input" / "data" / "config"
    config_channel.mkdir(parents=True)
    (config_channel / "segment.toml").write_text(
        '[reducer]\nalgorithm = "pca"\nparams = { k = 2 }\n'
        "[evaluation]\nsample_size = 200\nrepeats = 1\n[output]\nscatter_sample = 200\n"
    )
    (ml / "input" / "config").mkdir(parents=True)
    (ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    env = {
        "SM_MODEL_DIR": str(ml / "model"),
        "SM_OUTPUT_DIR": str(ml / "output"),
        "SM_OUTPUT_DATA_DIR": str(ml / "output" / "data"),
        "SM_INPUT_CONFIG_DIR": str(ml / "input" / "config"),
        "SM_CHANNEL_FEATURES": str(ml / "input" / "data" / "features"),
        "SM_CHANNEL_CONFIG": str(config_channel),
        "SM_CHANNELS": json.dumps(["config", "features"]),
        "TRAINING_JOB_NAME": JOB,
    }
    return ml, env


def test_training_job_contract(spark, tmp_path, monkeypatch, capsys):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    ml, env = _ml_tree(
        tmp_path,
        spark,
        {
            "clusterer.algorithm": "kmeans",
            "clusterer.params.k": "3",
            "clusterer.params.seed": "1",
            # another reducer than the config channel's (its PCA params are dropped); no
            # profiles: fewer Spark stages
            "reducer.algorithm": "none",
            "output.profile": "false",
            "run_date": "2026-12-06",
            "tracking.backend": "mlflow",
            "tracking.experiment": "sm-container",
            "tracking.tracking_uri": store,
            "tracking.artifact_location": str(tmp_path / "artifacts"),
            "gpu": "off",
            "_tuning_objective_metric": "silhouette",
        },
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # the folders SageMaker creates; the entry point must not rely on the default root
    assert container.main(["--ml-root", str(tmp_path / "elsewhere"), "train"]) == 0
    out = capsys.readouterr().out
    assert not (ml / "output" / "failure").exists()

    model = ml / "model"
    meta = json.loads((model / "pipeline.json").read_text())
    assert meta["clusterer"] == "kmeans" and meta["reducer"] == "none"
    assert (model / "clusterer" / "metadata").is_dir() and (model / "segments.json").is_file()
    data = ml / "output" / "data"
    summary = json.loads((data / "summary.json").read_text())
    assert (data / "report.html").is_file()
    assert summary["config"]["clusterer_params"] == {"k": 3, "seed": 1}
    assert summary["n_clusters"] == 3 and summary["customers"] == 300
    rows = spark.read.parquet(str(data / "assignments")).collect()
    assert len(rows) == 300 and {r["cluster"] for r in rows} == {0, 1, 2}

    # every metric line printed is matched by exactly its metric definition, with its value
    lines = [ln for ln in out.splitlines() if ln.startswith("metric: ")]
    figures = {**summary, **summary["metrics"]}
    assert len(lines) == len(container.METRICS)
    for definition in container.metric_definitions():
        found = [m.group(1) for ln in lines if (m := re.search(definition["Regex"], ln))]
        assert len(found) == 1, definition
        assert float(found[0]) == pytest.approx(figures[definition["Name"]])

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("sm-container")
    runs = client.search_runs([experiment.experiment_id])
    trial = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert trial.info.run_name == JOB and trial.info.status == "FINISHED"
    metrics = {k: v for r in runs for k, v in r.data.metrics.items()}
    assert metrics["silhouette"] == pytest.approx(summary["metrics"]["silhouette"])


def test_container_script_reports_a_failure_where_sagemaker_reads_it(spark, tmp_path):
    ml, env = _ml_tree(tmp_path, spark, {"clusterer.algorithm": "dbscan",
                                         "clusterer.params.minPoints": "many"})  # fmt: skip
    env = {**os.environ, **env, "PYTHONPATH": str(ROOT / "lib")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "container" / "train"), "train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    failure = (ml / "output" / "failure").read_text()
    assert failure == (
        "bad input: hyperparameter clusterer.params.minPoints='many' is not valid; accepted: an "
        "integer"
    )
    assert "metric:" not in done.stdout
    assert not (ml / "model").exists() or not any((ml / "model").iterdir())
