"""The training container's contract without Spark: hyperparameters onto the segment config,
the metric line format and the metric definitions' regexes, the /opt/ml paths."""

from __future__ import annotations

import json
import re

import pytest

from spark_clustering.jobs import container
from spark_clustering.jobs.container import (
    METRICS,
    Paths,
    config_from_hyperparameters,
    metric_definitions,
    metric_line,
    parse_hyperparameters,
)


@pytest.mark.parametrize("value", [0.4213, -0.25, 1e-07, 3.0, 1234567.5, 0.0, 12, -3.5e12])
def test_metric_regexes_match_the_printed_lines(value):
    definitions = {d["Name"]: d["Regex"] for d in metric_definitions()}
    assert list(definitions) == list(METRICS)
    for name in METRICS:
        line = f"2026-12-06 INFO {metric_line(name, value)} trailing"
        matches = [(n, m.group(1)) for n, r in definitions.items() if (m := re.search(r, line))]
        # exactly the metric printed matches, and its group is the value
        assert matches == [(name, matches[0][1])]
        assert float(matches[0][1]) == pytest.approx(value, rel=1e-12)


def test_metric_line_format():
    assert metric_line("silhouette", 0.4213) == "metric: silhouette=0.4213;"
    assert metric_line("n_clusters", 3) == "metric: n_clusters=3.0;"


def test_summary_metrics_keeps_finite_numbers_of_the_table():
    summary = {"customers": 300, "n_clusters": 3,
               "metrics": {"silhouette": 0.5, "davies_bouldin": float("nan"), "other": 1.0,
                           "silhouette_exact": True}}  # fmt: skip
    assert container.summary_metrics(summary) == {
        "silhouette": 0.5, "n_clusters": 3.0, "customers": 300.0,
    }  # fmt: skip


def test_hyperparameters_are_typed_as_the_config_expects():
    overrides, gpu = parse_hyperparameters(
        {
            "clusterer.algorithm": "kmeans",
            "clusterer.params.k": "8",
            "clusterer.params.eps": "0.5",
            "reducer.params.minDist": "0",
            "evaluation.enabled": "false",
            "input.select": "recency,frequency",
            "tracking.tracking_uri": "sqlite:///x.db",
            "gpu": "off",
            "_tuning_objective_metric": "silhouette",
            "sagemaker_program": "ignored",
        }
    )
    assert overrides == {
        "clusterer.algorithm": "kmeans",
        "clusterer.params.k": 8,
        "clusterer.params.eps": 0.5,
        "reducer.params.minDist": 0,
        "evaluation.enabled": False,
        "input.select": ["recency", "frequency"],
        "tracking.tracking_uri": "sqlite:///x.db",
    }
    assert gpu == "off"
    assert parse_hyperparameters({"clusterer.params.eps": "auto"})[0] == {
        "clusterer.params.eps": "auto"
    }


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("clusterer.params.k", "three", "hyperparameter clusterer.params.k='three' is not valid; "
         "accepted: an integer"),
        ("evaluation.enabled", "maybe", "accepted: true or false"),
        ("reducer.params.minDist", "nan", "accepted: an integer or a number"),
        ("gpu", "yes", "gpu='yes' is not valid; accepted: auto, on, off"),
        ("colour", "red", "hyperparameter 'colour' is unknown; accepted: gpu, "),
        ("output.path", "/tmp/x", "set by the container from its channels"),
    ],
)  # fmt: skip
def test_bad_hyperparameters_name_the_value_and_what_is_accepted(name, value, says):
    with pytest.raises(ValueError) as err:
        parse_hyperparameters({name: value})
    assert says in str(err.value)


def _tree(tmp_path, channels=("features",), config: str | None = None):
    for channel in channels:
        (tmp_path / "input" / "data" / channel).mkdir(parents=True)
    if config is not None:
        (tmp_path / "input" / "data" / "config").mkdir(parents=True)
        (tmp_path / "input" / "data" / "config" / "segment.toml").write_text(config)
    return Paths.resolve(str(tmp_path), env={})


def test_paths_follow_the_sm_variables(tmp_path):
    env = {
        "SM_MODEL_DIR": "/m",
        "SM_OUTPUT_DATA_DIR": "/o/data",
        "SM_OUTPUT_DIR": "/o",
        "SM_INPUT_CONFIG_DIR": "/c",
        "SM_CHANNEL_FEATURES": "/f",
    }
    paths = Paths.resolve(str(tmp_path), env=env)
    assert (paths.model, paths.output_data, paths.failure, paths.input_config) == (
        "/m", "/o/data", "/o/failure", "/c",
    )  # fmt: skip
    assert paths.channels == {"features": "/f"}
    bare = Paths.resolve(str(tmp_path), env={})
    assert bare.model == str(tmp_path / "model")
    assert bare.failure == str(tmp_path / "output" / "failure")


def test_config_from_hyperparameters_overrides_the_config_channel(tmp_path):
    paths = _tree(
        tmp_path,
        config='[clusterer]\nalgorithm = "kmeans"\nparams = { seed = 7 }\n'
        '[evaluation]\nsample_size = 300\n[output]\npath = "/ignored"\n',
    )
    config, gpu = config_from_hyperparameters(
        paths,
        {"clusterer.algorithm": "kmeans", "clusterer.params.k": "5", "reducer.algorithm": "pca",
         "reducer.params.k": "2"},
        str(tmp_path / "work"),
        {"TRAINING_JOB_NAME": "segment-261206-1200-ab12"},
    )  # fmt: skip
    assert config.input_path == paths.channels["features"] and config.input_kind == "features"
    assert config.output_path == str(tmp_path / "work")
    assert config.clusterer == "kmeans" and config.clusterer_params["k"] == 5
    assert config.clusterer_params["seed"] == 7  # from the channel's segment.toml
    assert config.eval_sample_size == 300
    # another algorithm than the channel's: its params are not carried over
    switched, _ = config_from_hyperparameters(
        paths, {"clusterer.algorithm": "gmm"}, str(tmp_path / "work"), {}
    )
    assert switched.clusterer == "gmm" and "seed" not in switched.clusterer_params
    assert config.trial == "segment-261206-1200-ab12"  # the trial is the training job
    assert gpu == "auto"


def test_config_problems_and_channels_are_reported(tmp_path):
    paths = _tree(tmp_path, channels=("features", "transactions"))
    with pytest.raises(ValueError, match="exactly one of features, transactions"):
        config_from_hyperparameters(paths, {}, str(tmp_path / "w"), {})
    paths = _tree(tmp_path / "b")
    with pytest.raises(ValueError, match=r"\[clusterer\].algorithm is required"):
        config_from_hyperparameters(paths, {}, str(tmp_path / "w"), {})


def test_a_bad_hyperparameter_fails_with_the_failure_file_before_spark(tmp_path, no_spark, capsys):
    paths = _tree(tmp_path)
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"clusterer.algorithm": "kmeans", "clusterer.params.k": "three"})
    )
    assert container.train(paths, env={}) == 2
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("bad input: hyperparameter clusterer.params.k='three'")
    assert "error: sagemaker-train:" in capsys.readouterr().err


def test_a_managed_mlflow_arn_reaches_the_segment_jobs_tracking(tmp_path, monkeypatch):
    from spark_clustering.jobs.segment import tracking_options
    from spark_clustering.tracking import config as tracking_config

    arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/segmentation"
    real = tracking_config.importlib.util.find_spec
    monkeypatch.setattr(
        tracking_config.importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "sagemaker_mlflow" else real(name, *a),
    )
    paths = _tree(tmp_path)
    config, _ = config_from_hyperparameters(
        paths,
        {"clusterer.algorithm": "kmeans", "tracking.backend": "mlflow",
         "tracking.tracking_uri": arn},
        str(tmp_path / "work"),
        {"TRAINING_JOB_NAME": "seg-1"},
    )  # fmt: skip
    assert tracking_options(config) == {"backend": "mlflow", "tracking_uri": arn}
    assert config.trial == "seg-1"


def test_a_failure_of_the_job_is_written_for_sagemaker_and_exits_1(tmp_path, monkeypatch):
    from spark_clustering.jobs import entry, segment

    paths = _tree(tmp_path)
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"clusterer.algorithm": "kmeans"})
    )

    def fail(spark, config):
        raise RuntimeError("executor lost while writing the assignments")

    monkeypatch.setattr(entry, "start_spark", lambda *a, **k: None)
    monkeypatch.setattr(segment, "run_segment", fail)
    monkeypatch.setenv("SPARK_CLUSTERING_LOG_DIR", str(tmp_path / "logs"))
    lines: list[str] = []
    assert container.train(paths, env={}, printer=lines.append) == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure == "RuntimeError: executor lost while writing the assignments"
    assert lines == []  # no metric line for a failed job
