"""get_spark under the real spark-submit: the master and settings spark-submit was given win,
and the Python workers of a local master run the driver's interpreter whatever PATH says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from submit_support import spark_submit_path, tail

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from spark_clustering.session import get_spark
spark = get_spark("probe")
conf = spark.sparkContext.getConf()
print("MASTER", spark.sparkContext.master)
print("SHUFFLE", spark.conf.get("spark.sql.shuffle.partitions"))
print("APP", conf.get("spark.app.name"))
def where(_):
    import sys
    yield sys.executable
print("WORKER", spark.sparkContext.parallelize([0], 1).mapPartitions(where).first())
print("DRIVER", sys.executable)
spark.stop()
"""


def _submit(
    tmp_path: Path, args: list[str], env_updates: dict[str, str]
) -> subprocess.CompletedProcess:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SPARK_HOME", "PYSPARK_PYTHON")}  # fmt: skip
    env.update(PYTHONPATH=str(ROOT / "lib"), **env_updates)
    cmd = [str(spark_submit_path()), *args, "--conf", "spark.ui.enabled=false",
           "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
           str(probe)]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, tail(done.stderr)
    return done


def _printed(done: subprocess.CompletedProcess) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def test_spark_submit_master_name_and_settings_are_kept(tmp_path: Path) -> None:
    done = _submit(
        tmp_path,
        [
            "--master",
            "local[1]",
            "--name",
            "given-name",
            "--conf",
            "spark.sql.shuffle.partitions=3",
        ],
        {"PYSPARK_DRIVER_PYTHON": sys.executable},
    )
    printed = _printed(done)
    # before the fix: local[*] and our 8 shuffle partitions replaced what spark-submit was given
    assert printed["MASTER"] == "local[1]"
    assert printed["SHUFFLE"] == "3"
    assert printed["APP"] == "given-name"


def test_spark_defaults_conf_is_the_cluster_setting(tmp_path: Path) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text(
        "spark.master local[1]\nspark.sql.shuffle.partitions 5\n"
    )
    env = {"SPARK_CONF_DIR": str(conf_dir), "PYSPARK_DRIVER_PYTHON": sys.executable}
    printed = _printed(_submit(tmp_path, [], env))
    assert printed["MASTER"] == "local[1]"
    assert printed["SHUFFLE"] == "5"


def test_local_workers_run_the_drivers_python_whatever_path_says(tmp_path: Path) -> None:
    # cron's PATH: `python3` there is not the interpreter that has the package
    done = _submit(
        tmp_path,
        ["--master", "local[2]"],
        {"PATH": "/usr/bin:/bin", "PYSPARK_DRIVER_PYTHON": sys.executable},
    )
    printed = _printed(done)
    assert printed["WORKER"] == printed["DRIVER"] == sys.executable
