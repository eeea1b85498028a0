"""Every ``spark_jobs/*.py`` through the real ``spark-submit`` (pyspark's), as EMR runs it.

Each job runs on a local master with the packaged library given as ``--py-files`` (the zip
``scripts/build-dist.sh`` builds and the launcher uploads), from a temporary working folder, with
the minimal arguments in :data:`JOBS`. A script in ``spark_jobs/`` without an entry in
:data:`JOBS` fails the suite: add its arguments there; an entry of :data:`JOBS` whose script is
missing fails it too, naming the script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from spark_clustering.emr import packaging

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SPARK_JOBS = ROOT / "spark_jobs"


@dataclass(frozen=True)
class Job:
    """How to run one job: its arguments (given the working folder) and what it must leave."""

    args: Callable[[Path], list[str]]
    outputs: Callable[[Path], list[Path]] = field(default=lambda work: [])
    stdout: tuple[str, ...] = ()  # text the job must print
    #: prepares the job's input in the working folder, with the test session's Spark
    setup: Callable[[Any, Path], object] | None = None


def _generated_transactions(spark: Any, work: Path) -> object:
    from spark_clustering.features.generate import generate_transactions

    return generate_transactions(spark, 400, str(work / "generated"), seed=3)


def _segment_input(spark: Any, work: Path) -> object:
    from segment_data import blobs, write_config, write_features

    ids, x, _ = blobs(40, seed=4)
    features = write_features(spark, work / "features", ids, x)
    return write_config(work / "segment.toml", features, str(work / "segments"))


def _segmented(spark: Any, work: Path) -> object:
    from spark_clustering.jobs.segment import run_segment
    from spark_clustering.jobs.segment_config import load_config

    return run_segment(spark, load_config(str(_segment_input(spark, work))))


def _sweep_input(spark: Any, work: Path) -> object:
    from segment_data import blobs, write_features

    ids, x, _ = blobs(40, seed=4)
    features = write_features(spark, work / "features", ids, x)
    config = work / "sweep.toml"
    config.write_text(
        f'run_date = "2026-11-01"\n[input]\npath = "{features}"\n'
        f'[output]\npath = "{work / "segments"}"\nscatter_sample = 100\n'
        '[search]\nclusterers = [{ algorithm = "kmeans", params = { k = [2, 3], seed = 1 } }]\n'
    )
    return config


def _published(work: Path, *names: str) -> list[Path]:
    """Files of the run the segment job published for 2026-11-01 under ``work/segments``."""
    from spark_clustering.jobs.publish import current_run

    run = current_run(None, str(work / "segments"), "2026-11-01")
    folder = Path(run.path) if run else work / "segments" / "no published run"
    return [folder / name for name in names]


#: job name (spark_jobs/<name>.py) -> how to run it with the smallest useful input.
JOBS: dict[str, Job] = {
    "prepare_features": Job(
        setup=_generated_transactions,
        args=lambda w: [
            "--config",
            str(ROOT / "examples" / "prepare.toml"),
            "--input",
            str(w / "generated" / "transactions"),
            "--output",
            str(w / "prepared"),
            "--gpu",
            "off",
        ],
        outputs=lambda w: [w / "prepared" / "features", w / "prepared" / "preparation.json"],
    ),
    "segment_customers": Job(
        setup=_segment_input,
        args=lambda w: ["--config", str(w / "segment.toml"), "--run-date", "2026-11-01"],
        outputs=lambda w: _published(w, "assignments", "model/pipeline.json", "report.html"),
        stdout=("segment:", "report:"),
    ),
    "score_customers": Job(
        setup=_segmented,
        args=lambda w: [
            *("--model", str(w / "segments"), "--input", str(w / "features")),
            *("--output", str(w / "scored"), "--run-date", "2026-11-02"),
        ],
        outputs=lambda w: [w / "scored" / "run_date=2026-11-02"],
        stdout=("score:",),
    ),
    "sweep": Job(
        setup=_sweep_input,
        args=lambda w: ["--config", str(w / "sweep.toml"), "--gpu", "off"],
        outputs=lambda w: _published(w, "report.html"),
        stdout=("sweep: 2 trials run",),
    ),
    "dbscan_demo": Job(
        args=lambda w: ["--points", "1500", "--eps", "0.6", "--min-points", "10"],
        stdout=("clusters found:", "adjusted Rand index"),
    ),
}


def spark_submit_path() -> Path:
    import pyspark

    path = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    assert path.is_file(), f"pyspark ships no spark-submit at {path}"
    return path


@pytest.fixture(scope="module")
def pyfiles_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return packaging.build_pyfiles_zip(tmp_path_factory.mktemp("dist"))


def spark_submit(
    script: Path, args: list[str], pyfiles: Path, work: Path
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_CLUSTERING_TRACKING=os.environ.get("SPARK_CLUSTERING_TRACKING", "none"),
    )
    cmd = [
        str(spark_submit_path()),
        "--master", "local[2]",
        "--driver-memory", "2g",
        "--py-files", str(pyfiles),
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.sql.shuffle.partitions=4",
        "--conf", "spark.driver.bindAddress=127.0.0.1",
        "--conf", "spark.driver.host=127.0.0.1",
        str(script),
        *args,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def test_every_job_script_has_an_entry() -> None:
    scripts = sorted(p.stem for p in SPARK_JOBS.glob("*.py") if not p.name.startswith("_"))
    missing = [s for s in scripts if s not in JOBS]
    assert not missing, (
        f"spark_jobs/{{{','.join(missing)}}}.py have no entry in JOBS in {__file__}: add the "
        "smallest arguments that run them, so spark-submit is tested for every job"
    )


def test_zip_is_what_the_driver_and_executors_import(pyfiles_zip: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import spark_clustering\n"
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "print('DRIVER', spark_clustering.__file__)\n"
        "def where(_):\n"
        "    import spark_clustering as sc\n"
        "    yield sc.__file__\n"
        "rdd = spark.sparkContext.parallelize(range(4), 2)\n"
        "for path in set(rdd.mapPartitions(where).collect()):\n"
        "    print('EXECUTOR', path)\n"
        "spark.stop()\n"
    )
    proc = spark_submit(probe, [], pyfiles_zip, tmp_path)
    assert proc.returncode == 0, _tail(proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("DRIVER", "EXECUTOR"))]
    assert {ln.split()[0] for ln in lines} == {"DRIVER", "EXECUTOR"}
    for line in lines:
        # The executor sees the zip under its own copy of the --py-files; both are the zip.
        assert pyfiles_zip.name in line.split(maxsplit=1)[1], line


def test_every_entry_has_a_job_script() -> None:
    missing = sorted(job for job in JOBS if not (SPARK_JOBS / f"{job}.py").is_file())
    assert not missing, (
        f"JOBS in {__file__} lists {missing}, but spark_jobs/ has no such script: write it or "
        "remove the entry"
    )


@pytest.mark.parametrize("job", sorted(JOBS))
def test_job_runs_through_spark_submit(
    job: str, pyfiles_zip: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    spec = JOBS[job]
    script = SPARK_JOBS / f"{job}.py"
    assert script.is_file(), f"spark_jobs/{job}.py is missing (listed in JOBS)"
    if spec.setup is not None:
        spec.setup(request.getfixturevalue("spark"), tmp_path)
    proc = spark_submit(script, spec.args(tmp_path), pyfiles_zip, tmp_path)
    assert proc.returncode == 0, f"spark-submit {job} failed:\n{_tail(proc.stderr)}"
    for text in spec.stdout:
        assert text in proc.stdout, f"{job} did not print {text!r}:\n{_tail(proc.stdout)}"
    for output in spec.outputs(tmp_path):
        assert output.exists(), f"{job} did not write {output}"
