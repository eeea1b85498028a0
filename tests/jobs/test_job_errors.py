"""Bad input through the jobs: checks that need no data fail before Spark starts, checks that
need the data fail before the work, and no failure shows the user a Java or Python stack trace
(one ``error:`` line on stderr, the trace in the log). Also ``segment`` on ``array<double>``
features, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segment_data import blobs, write_config
from spark_clustering.jobs import prepare, segment, sweep

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "lib"
RUN_DATE = "2026-11-01"


def _error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("error:")]


# ------------------------------------------------------------------------ before Spark starts


@pytest.mark.parametrize("eps", ["inf", "nan", "-inf", "0.0", "-1.0"])
def test_non_finite_or_non_positive_eps_fails_before_spark(no_spark, tmp_path, capsys, eps):
    features = tmp_path / "features"
    features.mkdir()
    config = write_config(
        tmp_path / "segment.toml",
        str(features),
        str(tmp_path / "out"),
        clusterer=f'algorithm = "dbscan"\nparams = {{ eps = {eps}, minPoints = 5 }}',
    )
    assert segment.main(["--config", config]) == 2
    err = capsys.readouterr().err
    assert f"[clusterer].params.eps: {float(eps)!r}; accepted: a finite number > 0" in err


def test_sweep_eps_list_with_inf_fails_before_spark(no_spark, tmp_path, capsys):
    features = tmp_path / "features"
    features.mkdir()
    config = tmp_path / "sweep.toml"
    config.write_text(
        f'[input]\npath = "{features}"\n[output]\npath = "{tmp_path / "out"}"\n'
        '[search]\nclusterers = [{ algorithm = "dbscan", params = { eps = [0.5, inf] } }]\n'
    )
    assert sweep.main(["--config", str(config)]) == 2
    assert "eps: inf; accepted: a finite number > 0" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["output", "parent"])
def test_output_path_that_is_a_file_fails_before_spark(no_spark, tmp_path, capsys, where):
    features = tmp_path / "features"
    features.mkdir()
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    output = a_file if where == "output" else a_file / "segments"
    config = write_config(tmp_path / "segment.toml", str(features), str(output))
    assert segment.main(["--config", config]) == 2
    err = capsys.readouterr().err
    assert f"[output].path: {str(a_file)!r} is a file; accepted: a directory" in err


def test_prepare_missing_input_or_file_output_fails_before_spark(no_spark, tmp_path, capsys):
    spec = str(ROOT / "examples" / "prepare.toml")
    missing = tmp_path / "no-such-transactions"
    args = ["--config", spec, "--input", str(missing), "--output", str(tmp_path / "prepared")]
    assert prepare.main(args) == 2
    err = capsys.readouterr().err
    assert _error_lines(err) == [f"error: prepare: input.path: {str(missing)!r} does not exist"], (
        err
    )
    (tmp_path / "transactions").mkdir()
    (tmp_path / "prepared").write_text("a file")
    args = ["--config", spec, "--input", str(tmp_path / "transactions")]
    assert prepare.main([*args, "--output", str(tmp_path / "prepared")]) == 2
    assert "output.path: " in capsys.readouterr().err


# ----------------------------------------------------------------------------- with Spark


@pytest.mark.spark
@pytest.mark.slow
def test_segment_on_array_features_end_to_end(spark, tmp_path):
    """The profiles stage and the scatter read an ``array<double>`` features column too."""
    ids, x, _ = blobs(30, seed=2)
    rows = [(int(i), [float(v) for v in r]) for i, r in zip(ids, x, strict=True)]
    path = tmp_path / "features"
    table = spark.createDataFrame(rows, "customer_id long, features array<double>")
    table.coalesce(1).write.parquet(str(path))
    out = tmp_path / "out"
    config = write_config(
        tmp_path / "segment.toml",
        str(path),
        str(out),
        reducer='algorithm = "none"',
        clusterer='algorithm = "kmeans"\nparams = { k = 3, seed = 1 }',
    )
    assert segment.main(["--config", config, "--run-date", RUN_DATE]) == 0
    from spark_clustering.jobs.publish import current_run

    summary = json.loads(Path(current_run(None, str(out), RUN_DATE).summary).read_text())
    profiles = summary["profiles"]
    assert sum(p["size"] for p in profiles) == len(rows)
    assert summary["profile_features"] == ["f0", "f1", "f2", "f3"]
    assert all(set(p["mean"]) == {"f0", "f1", "f2", "f3"} for p in profiles)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m spark_clustering.cli`` on this checkout's library, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_HOME",)}
    env.update(
        PYTHONPATH=str(LIB),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_CLUSTERING_TRACKING="none",
        SPARK_CLUSTERING_LOG_DIR=str(cwd / "logs"),
    )
    cmd = [sys.executable, "-m", "spark_clustering.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _mixed_dimensions(spark, root: Path) -> str:
    rows = [(i, [float(i), 1.0, 2.0]) for i in range(20)] + [(99, [1.0, 2.0])]
    path = root / "features"
    spark.createDataFrame(rows, "customer_id long, features array<double>").write.parquet(str(path))
    return str(path)


def _corrupt_parquet(spark, root: Path) -> str:
    path = root / "features"
    path.mkdir()
    (path / "part-00000.parquet").write_bytes(b"PAR1 this is not a parquet file at all " * 50)
    return str(path)


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "code", "cause"),
    [
        (_mixed_dimensions, 2, "featuresCol='features' holds rows of different dimensions"),
        (_corrupt_parquet, 1, "not a Parquet file"),
    ],
    ids=["mixed-dimensions", "corrupt-parquet"],
)
def test_cli_failure_is_one_error_line_without_a_trace(spark, tmp_path, make, code, cause):
    features = make(spark, tmp_path)
    config = write_config(
        tmp_path / "segment.toml",
        features,
        str(tmp_path / "out"),
        reducer='algorithm = "none"',
        clusterer='algorithm = "kmeans"\nparams = { k = 3, seed = 1 }',
    )
    proc = _cli(["segment", "--config", config, "--run-date", RUN_DATE, "--gpu", "off"], tmp_path)
    assert proc.returncode == code, proc.stderr[-3000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr[-3000:]
    assert cause in errors[0], errors[0]
    traces = [
        ln
        for ln in proc.stderr.splitlines()
        if "at org.apache" in ln or "Traceback" in ln or ln.lstrip().startswith('File "')
    ]
    assert not traces, proc.stderr[-3000:]
    if code == 1:  # a failure of the work: the full trace is in the file the line names
        trace = Path(errors[0].rsplit("(full trace: ", 1)[1].rstrip(")"))
        assert trace.parent == tmp_path / "logs"
        assert "Traceback" in trace.read_text()
