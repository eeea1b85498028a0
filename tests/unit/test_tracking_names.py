"""Tracking: name rules, sanitisation, redaction, configuration and run context."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import numpy as np
import pytest

from spark_clustering.tracking import config as cfg
from spark_clustering.tracking import context, names

SAGEMAKER_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}$")


# ------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name", ["customer-segmentation", "umap3-dbscan-eps0.31", "k=4 run@2026/11", "a" * 120]
)
def test_valid_names_pass_unchanged(name):
    assert names.validate_name("trial", name) == name


@pytest.mark.parametrize("bad", ["", " ", " lead", "trail ", "a" * 121, "tab\there", "é", "a#b", 3])
def test_invalid_names_raise_naming_param_value_and_rule(bad):
    with pytest.raises(ValueError) as err:
        names.validate_name("experiment", bad)
    text = str(err.value)
    assert text.startswith(f"experiment={bad!r}")
    assert "accepted:" in text


def test_sagemaker_names_are_valid_deterministic_and_collision_free():
    rng = random.Random(7)
    alphabet = "abcXYZ019 _.:/=+-@#é[]"
    seen: dict[str, str] = {}
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200)))
        derived = names.sagemaker_name(value)
        assert SAGEMAKER_RE.match(derived), (value, derived)
        assert names.sagemaker_name(value) == derived
        assert seen.setdefault(derived, value) == value, f"{value!r} and {seen[derived]!r} collide"
    # the characters SageMaker rejects are replaced, and the hash keeps near-twins apart
    assert names.sagemaker_name("eps0.31") != names.sagemaker_name("eps0-31")
    assert names.sagemaker_name("eps0-31") == "eps0-31"
    long_a, long_b = "x" * 130 + "a", "x" * 130 + "b"
    assert names.sagemaker_name(long_a) != names.sagemaker_name(long_b)
    assert len(names.sagemaker_name(long_a, 40)) <= 40


def test_sanitize_name_makes_valid_distinct_names():
    a, b = names.sanitize_name("eps=0.31 [run#2]"), names.sanitize_name("eps=0.31 [run#3]")
    assert a != b
    assert names.validate_name("trial", a) == a
    assert names.sanitize_name("already-fine") == "already-fine"
    with pytest.raises(ValueError, match="sanitize_name gives"):
        names.validate_name("trial", "eps=0.31 [run#2]")


@pytest.mark.parametrize("key", ["eps", "UMAP.nNeighbors", "loss/train", "k 4", "a:b-c_d"])
def test_valid_keys(key):
    assert names.validate_key("parameter", key) == key


@pytest.mark.parametrize("key", ["", "/abs", "a..b", "x" * 129, "na$me", "é"])
def test_invalid_keys(key):
    with pytest.raises(ValueError, match=r"^parameter="):
        names.validate_key("parameter", key)


def test_media_type_rule():
    assert names.validate_media_type("s3/uri") == "s3/uri"
    assert names.validate_media_type("image/svg+xml") == "image/svg+xml"
    assert names.validate_media_type(None) is None
    with pytest.raises(ValueError, match="media_type='png'"):
        names.validate_media_type("png")


# ------------------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "key",
    ["password", "db_password", "awsSecretAccessKey", "aws_access_key_id", "api-key", "TOKEN"],
)
def test_credential_like_keys_are_redacted(key):
    assert names.coerce_param(key, "hunter2") == names.REDACTED
    assert names.redact_tags({key: "hunter2"}) == {key: names.REDACTED}


def test_non_secret_keys_keep_their_values():
    assert names.coerce_param("eps", 0.31) == 0.31
    assert names.coerce_param("minPoints", np.int64(20)) == 20
    assert isinstance(names.coerce_param("minPoints", np.int64(20)), int)
    assert names.coerce_param("scale", np.float32(0.5)) == 0.5
    assert names.coerce_param("flag", True) == "true"
    assert names.coerce_param("cols", ["a", "b"]) == '["a", "b"]'
    assert names.coerce_param("x", None) == "None"


def test_embedded_credentials_are_removed_from_values():
    text = names.redact_text("s3a://AKIAABCDEFGHIJKLMNOP:abc@bucket/x and https://u:p@h/y")
    assert "AKIA" not in text and "u:p" not in text and ":abc@" not in text
    assert text.startswith("s3a://") and "@bucket/x" in text and "https://" in text


def test_long_values_are_cut_visibly():
    value = names.coerce_param("notes", "x" * 5000)
    assert isinstance(value, str)
    assert len(value) <= names.PARAM_VALUE_MAX
    assert value.endswith("chars]")


@pytest.mark.parametrize("bad", ["0.5x", float("nan"), float("inf"), True, [1]])
def test_metric_values_must_be_finite_numbers(bad):
    with pytest.raises(ValueError):
        names.coerce_metric(bad)


# ------------------------------------------------------------------------------------- config


def test_config_precedence_argument_env_file(tmp_path):
    file = tmp_path / "tracking.toml"
    file.write_text(
        '[tracking]\nbackend = "sagemaker"\nmax_trials_per_experiment = 120\n'
        'tracking_uri = "sqlite:///file.db"\n'
    )
    env = {cfg.CONFIG_ENV: str(file)}
    from_file = cfg.resolve_config(env=env)
    assert from_file.backend == "sagemaker"
    assert from_file.max_trials_per_experiment == 120
    env_wins = cfg.resolve_config(env={**env, "SPARK_CLUSTERING_TRACKING": "none"})
    assert env_wins.backend == "none" and env_wins.tracking_uri == "sqlite:///file.db"
    arg_wins = cfg.resolve_config("mlflow", env={**env, "SPARK_CLUSTERING_TRACKING": "none"})
    assert arg_wins.backend == "mlflow"
    assert cfg.resolve_config(env={}).backend == "mlflow"


def test_json_config_file_and_strict_env(tmp_path):
    file = tmp_path / "tracking.json"
    file.write_text(json.dumps({"tracking": {"backend": "none", "metric_buffer": 5}}))
    resolved = cfg.resolve_config(config=str(file), env={"SPARK_CLUSTERING_TRACKING_STRICT": "yes"})
    assert (resolved.backend, resolved.metric_buffer, resolved.strict) == ("none", 5, True)


def test_default_mlflow_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert cfg.resolve_config("mlflow", env={}).mlflow_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert cfg.resolve_config("mlflow", env={}).mlflow_uri() == "http://mlflow:5000"
    assert cfg.resolve_config("mlflow", env={}, tracking_uri="x").mlflow_uri() == "x"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "wandb"}, "backend='wandb' is not valid; accepted: mlflow, sagemaker, none"),
        ({"strict": "maybe"}, "strict='maybe' is not valid"),
        ({"max_attempts": 0}, "max_attempts=0 is out of range; accepted: >= 1"),
        ({"max_components_per_trial": "x"}, "max_components_per_trial='x' is not an integer"),
        ({"artifact_uri": "/local/dir"}, "artifact_uri='/local/dir' is not valid"),
        ({"colour": "red"}, "tracking option 'colour' is unknown"),
    ],
)
def test_bad_config_values_raise_clearly(kwargs, message):
    with pytest.raises(ValueError) as err:
        cfg.resolve_config(env={}, **kwargs)
    assert message in str(err.value)


def test_bad_config_file(tmp_path):
    with pytest.raises(ValueError, match="is not a readable file"):
        cfg.resolve_config(config=str(tmp_path / "missing.toml"), env={})
    yaml = tmp_path / "t.yaml"
    yaml.write_text("tracking: {}")
    with pytest.raises(ValueError, match=r"accepted: a \.toml or \.json file"):
        cfg.resolve_config(config=str(yaml), env={})
    bad = tmp_path / "t.toml"
    bad.write_text("[tracking]\nbackend = 'nope'\n")
    with pytest.raises(ValueError, match="backend='nope'"):
        cfg.resolve_config(config=str(bad), env={})


# ------------------------------------------------------------------------------------- context


def test_emr_context_from_job_flow_file_and_step_dir(tmp_path):
    info = tmp_path / "job-flow.json"
    info.write_text(json.dumps({"jobFlowId": "j-2AXXXXXXGAPLF", "masterInstanceType": "m5"}))
    tags = context.emr_context(info, environ={}, cwd="/mnt/var/lib/hadoop/steps/s-3UEXAMPLE")
    assert tags == {"emr.cluster_id": "j-2AXXXXXXGAPLF", "emr.step_id": "s-3UEXAMPLE"}
    env = {"EMR_CLUSTER_ID": "j-ENV", "EMR_STEP_ID": "s-ENV"}
    assert context.emr_context(info, environ=env, cwd="/tmp") == {
        "emr.cluster_id": "j-ENV",
        "emr.step_id": "s-ENV",
    }
    assert context.emr_context(tmp_path / "absent.json", environ={}, cwd="/home/me") == {}


def test_run_context_has_version_and_commit(monkeypatch):
    from spark_clustering import __version__

    monkeypatch.delenv("SPARK_CLUSTERING_GIT_COMMIT", raising=False)
    tags = context.run_context()
    assert tags["spark_clustering.version"] == __version__
    head = subprocess.run(
        ["git", "-C", context.__file__.rsplit("/", 1)[0], "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode == 0:
        assert tags["git.commit"] == head.stdout.strip()
    monkeypatch.setenv("SPARK_CLUSTERING_GIT_COMMIT", "abc123")
    assert context.run_context()["git.commit"] == "abc123"


def test_spark_context_is_empty_when_pyspark_is_not_loaded(monkeypatch):
    monkeypatch.delitem(sys.modules, "pyspark.sql", raising=False)
    assert context.spark_context() == {}


def test_tracking_imports_on_a_bare_driver():
    code = (
        "import sys\n"
        "import spark_clustering.tracking, spark_clustering.tracking.hooks\n"
        "import spark_clustering.jobs.leaderboard\n"
        "from spark_clustering import tracking\n"
        "with tracking.trial('e', 't', backend='none') as t:\n"
        "    t.log_metric('m', 1.0)\n"
        "heavy = [m for m in ('mlflow', 'boto3', 'botocore', 'pyspark', 'pandas') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
