"""The ``--py-files`` zip through the real ``spark-submit`` (pyspark's), as EMR runs it: the
driver and the executors import the package from the zip the launcher uploads.

Every ``spark_jobs/*.py`` itself runs through ``spark-submit`` with that zip in the cluster tier
(``tests/cluster/test_jobs_on_cluster.py``), on ``local[2]`` and on the two-worker standalone
cluster, which also fails when a script has no case there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spark_clustering.emr import packaging

pytestmark = [pytest.mark.spark, pytest.mark.slow]


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
