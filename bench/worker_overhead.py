"""Per-task cost of a PySpark Python worker, without and with ``prepare_worker``.

PySpark 3.5 calls ``importlib.invalidate_caches()`` at the start of every task; on Python 3.10
and 3.11 every zip importer then re-reads its archive's directory (``pyspark.zip``, the py4j
zip, the ``spark-core`` jar). ``spark_clustering._worker.prepare_worker`` (called first by
every function this package ships to executors) re-reads an archive only when it changed.

Two identical jobs over ``--partitions`` tasks of a trivial pandas UDF on local[2]: the plain
one, then one whose UDF calls ``prepare_worker`` (each on fresh Python workers, warmed by one
untimed run). Prints the median wall time of ``--runs`` runs of each and the ratio.

    python bench/worker_overhead.py --partitions 64 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def _session():
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[2]")
        .appName("bench-worker-overhead")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )


def _time_job(prepared: bool, partitions: int, runs: int) -> float:
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    spark = _session()
    df = spark.range(0, partitions * 100, numPartitions=partitions)

    def plain(ids: pd.Series) -> pd.Series:
        if prepared:
            from spark_clustering._worker import prepare_worker

            prepare_worker()
        return ids

    plain.__annotations__ = {"ids": pd.Series, "return": pd.Series}  # not strings
    udf = pandas_udf(plain, "long")  # type: ignore[call-overload]

    def job() -> None:
        df.select(udf("id")).write.format("noop").mode("overwrite").save()

    job()  # starts the Python workers (and installs the patch in them)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        job()
        times.append(time.perf_counter() - t0)
    spark.stop()  # the next job gets fresh Python workers
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--partitions", type=int, default=64)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    print(f"Python {sys.version.split()[0]}, {a.partitions} tasks on local[2]")
    plain = _time_job(False, a.partitions, a.runs)
    prepared = _time_job(True, a.partitions, a.runs)
    per_task = (plain - prepared) / (a.partitions / 2) * 1000
    print(f"plain PySpark worker:         {plain:.2f} s (median of {a.runs})")
    print(f"with prepare_worker:          {prepared:.2f} s")
    print(f"saved per task (per core):    {per_task:.0f} ms")
    print(f"RATIO plain / prepared:       {plain / prepared:.2f}x")


if __name__ == "__main__":
    main()
