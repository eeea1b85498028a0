"""DBSCAN benchmark: spark-clustering on local[2] against scikit-learn and the `dbscan` package.

Same data for all three (bench/datasets.py: 3-D blobs of 27x density range plus 5% uniform
noise), minPoints=10, eps from the knee of the k-distance curve (exact 10-NN distances of
10,000 sampled points against all points, Kneedle). Each contender runs in its own process,
so wall time and peak memory (of the whole process tree: the JVM and the Python workers for
Spark, sampled every 0.1 s as resident memory summed over the processes) are the whole cost.
Ours and the `dbscan` package run a second time for their peak proportional set size, which
counts a page the forked Python workers share with their parent once (reading it costs a third
of a core at that rate, so it is never sampled in a timed run). Parity: core points and the
partition of core points must equal scikit-learn's (or the `dbscan` package's where
scikit-learn is not run).

    python bench/dbscan.py --sizes 100000 1000000 3000000 --sklearn-max 3000000 --floor
    BENCH_DRIVER_MEMORY=12g BENCH_REPEAT=0 python bench/dbscan.py --sizes 20000000 --sklearn-max 0 \
        --eps 0.1869

Our time is fit + labelling every row (``transform``) + writing the labels to Parquet, from
a Parquet input, excluding the JVM start; the others' is ``fit`` on an in-memory array. As in
issue 18's measurement, ours and the floor are timed after a warm-up: the same code first runs
untimed on the first 20,000 rows in the same session (Python workers started, the JVM's code
compiled), as in any job that fits more than once. ``BENCH_WARM_UP=0`` times a cold first run.
``repeat_seconds`` is the same fit once more in the same session (ours) or process (the `dbscan`
package), as the second and later fits of a sweep run: the JVM has then compiled the code a
20,000-row warm-up leaves interpreted.
With ``--floor`` the "floor" contender also runs: one routed pass of the same rows through Spark
and a Python function that computes nothing (see ``run_floor``), the least a Spark DBSCAN with
per-region Python kernels pays, so the results can say how much of our time is Spark itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
MIN_POINTS = 10
#: rows of a first, untimed run of the same code in the same session (0: time a cold first run)
WARM_UP = int(os.environ.get("BENCH_WARM_UP", "20000"))
#: time the same fit a second time (``BENCH_REPEAT=0``: not, which saves minutes at 20M)
REPEAT = os.environ.get("BENCH_REPEAT", "1") != "0"


def _dataset(n: int, seed: int) -> Path:
    path = DATA / f"blobs_{n}_{seed}.npy"
    if not path.exists():
        sys.path.insert(0, str(HERE))
        from datasets import blobs_with_noise

        DATA.mkdir(parents=True, exist_ok=True)
        np.save(path, blobs_with_noise(n, seed=seed))
    return path


def _parquet(npy: Path) -> Path:
    path = npy.with_suffix(".parquet")
    if not path.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq

        x = np.load(npy)
        flat = pa.array(x.reshape(-1))
        features = pa.FixedSizeListArray.from_arrays(flat, x.shape[1]).cast(pa.list_(pa.float64()))
        table = pa.table({"id": pa.array(np.arange(x.shape[0])), "features": features})
        pq.write_table(table, path, row_group_size=500_000)
    return path


def knee_eps(x: np.ndarray, k: int = MIN_POINTS, queries: int = 10_000) -> float:
    from sklearn.neighbors import NearestNeighbors

    from spark_clustering.neighbors import knee_of_sorted

    rng = np.random.default_rng(0)
    q = x[rng.choice(x.shape[0], size=min(queries, x.shape[0]), replace=False)]
    dist, _ = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(q)
    return float(knee_of_sorted(np.sort(dist[:, -1])))


# --------------------------------------------------------------------------- contenders


def _spark_and_points(app: str, npy: Path):
    """A local[2] session (driver heap from BENCH_DRIVER_MEMORY, default 2g: a JVM grows its
    heap towards the maximum it may have, so a larger one measures the setting, not the job's
    need; the 20M run needs 12g) and the points."""
    from spark_clustering.session import get_spark

    spark = get_spark(
        app,
        master="local[2]",
        conf={"spark.driver.memory": os.environ.get("BENCH_DRIVER_MEMORY", "2g")},
        gpu="off",
    )
    return spark, spark.read.parquet(str(_parquet(npy)))


def run_ours(npy: Path, eps: float, out: Path) -> dict:
    """Fit + label every row + write; the fit's own log lines (its stages: sample and regions,
    the one routed pass with the summed kernel time, the merge) come back as ``stages``."""
    import logging

    from spark_clustering import DBSCAN

    stages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stages.append(f"{time.monotonic() - start:.1f}s {record.getMessage()}")

    log = logging.getLogger("spark_clustering.backends.dbscan_spark")
    log.setLevel(logging.INFO)
    log.addHandler(Keep())
    spark, df = _spark_and_points("bench-dbscan", npy)

    def once(data, where: Path):
        model = DBSCAN(eps=eps, minPoints=MIN_POINTS).fit(data)
        fitted = time.monotonic()
        labels = model.transform(data).select("id", "cluster", "is_core")
        labels.write.mode("overwrite").parquet(str(where))
        return model, fitted

    start = time.monotonic()
    if WARM_UP:
        once(df.limit(WARM_UP), out.with_name(out.name + ".warm-up"))[0].unpersist()
        stages.clear()
        start = time.monotonic()
    model, fitted = once(df, out)
    fit_s = fitted - start
    total = time.monotonic() - start
    model.unpersist()
    result = {
        "seconds": total,
        "fit_seconds": fit_s,
        "label_write_seconds": total - fit_s,
        "clusters": model.numClusters,
        "stages": list(stages),
    }
    if REPEAT:  # a sweep fits many times in one session: the same fit again, its code compiled
        again = time.monotonic()
        once(df, out.with_name(out.name + ".repeat"))[0].unpersist()
        result["repeat_seconds"] = time.monotonic() - again
    spark.stop()
    return result


def run_floor(npy: Path, eps: float, out: Path) -> dict:
    """What any Spark DBSCAN that clusters space partitions in Python pays at the least, with
    our own routing: read the rows, route each (the whole row to its home region, coordinates
    and a row key to the regions within 2 eps, as the fit does) through the one shuffle to
    Python (Arrow, one region per task), return a label per home row without computing
    anything, and write (id, label) to Parquet. One pass, one shuffle, no clustering, no merge,
    no join."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    from spark_clustering.partitioning import build_regions
    from spark_clustering.routing import (
        HOME,
        ROW_KEY,
        map_regions,
        partition_by_region,
        route,
    )

    spark, df = _spark_and_points("bench-dbscan-floor", npy)
    xcols = ["x0", "x1", "x2"]
    sample = np.asarray(np.load(npy, mmap_mode="r")[:: max(1, df.count() // 50_000)])

    def label(region: int, table: pa.Table):
        home = table.filter(table.column(HOME))  # the copies the fit labels
        yield pa.RecordBatch.from_arrays(
            [home.column("id").combine_chunks(), pa.array(np.zeros(home.num_rows, np.int32))],
            names=["id", "cluster"],
        )

    def once(data, where: Path) -> None:
        points = data.select(
            F.monotonically_increasing_id().alias(ROW_KEY),
            *[F.col("features")[i].alias(c) for i, c in enumerate(xcols)],
            "id",
        )
        n = data.count()
        regions = build_regions(sample, max(4, -(-n // 250_000)), min_width=2 * eps)
        routed = route(points, regions, xcols, 2 * eps, carried=[ROW_KEY], home_only=["id"])
        parts = partition_by_region(routed, regions.n_regions)
        labels = map_regions(parts, label, "id long, cluster int")
        labels.write.mode("overwrite").parquet(str(where))

    if WARM_UP:
        once(df.limit(WARM_UP), out.with_name(out.name + ".warm-up"))
    start = time.monotonic()
    once(df, out)
    seconds = time.monotonic() - start
    spark.stop()
    return {"seconds": seconds, "clusters": 0}


def run_sklearn(npy: Path, eps: float, out: Path) -> dict:
    from sklearn.cluster import DBSCAN

    x = np.load(npy)
    start = time.monotonic()
    model = DBSCAN(eps=eps, min_samples=MIN_POINTS, n_jobs=-1).fit(x)
    seconds = time.monotonic() - start
    core = np.zeros(x.shape[0], dtype=bool)
    core[model.core_sample_indices_] = True
    np.savez(out, labels=model.labels_, core=core)
    return {"seconds": seconds, "clusters": int(model.labels_.max() + 1)}


def run_dbscan_pkg(npy: Path, eps: float, out: Path) -> dict:
    # this script's own folder would shadow the `dbscan` package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.modules.pop("dbscan", None)
    from dbscan import DBSCAN

    x = np.ascontiguousarray(np.load(npy))
    start = time.monotonic()
    labels, core = DBSCAN(x, eps=eps, min_samples=MIN_POINTS)
    seconds = time.monotonic() - start
    result = {"seconds": seconds, "clusters": int(labels.max() + 1)}
    if REPEAT:
        again = time.monotonic()
        DBSCAN(x, eps=eps, min_samples=MIN_POINTS)
        result["repeat_seconds"] = time.monotonic() - again
    np.savez(out, labels=labels, core=core)
    return result


RUNNERS = {
    "ours": run_ours,
    "floor": run_floor,
    "sklearn": run_sklearn,
    "dbscan": run_dbscan_pkg,
}


def _pss(pid: int) -> int:
    """Proportional set size of one process (bytes): a page shared by n processes counts 1/n,
    so forked Python workers do not count their parent's pages again. 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _measure(which: str, npy: Path, eps: float, out: Path, pss: bool = False) -> dict:
    """Run one contender in a child process; sample the tree's resident memory (summed over
    the processes) every 0.1 s, and with ``pss`` its proportional set size too.

    Reading a process's PSS makes the kernel walk its page tables (~20 ms for the JVM or a
    Python with numba loaded, ~50 ms per sample of our process tree), which at 0.1 s takes a
    third of a core from the contender: timings come from runs that sample only the resident
    set (~2.5 ms per sample), and PSS from a separate run."""
    import psutil

    cmd = [sys.executable, __file__, "--child", which, str(npy), repr(eps), str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    peak = peak_pss = 0
    wall_start = time.monotonic()
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
            if pss:
                peak_pss = max(peak_pss, sum(_pss(p.pid) for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.1)
    stdout, _ = proc.communicate()
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}", "peak_gib": peak / 2**30}
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_gib"] = peak / 2**30
    if pss:
        result["peak_pss_gib"] = peak_pss / 2**30
    result["process_seconds"] = time.monotonic() - wall_start
    return result


def _load_labels(which: str, out: Path) -> tuple[np.ndarray, np.ndarray]:
    if which == "ours":
        import pyarrow.parquet as pq

        t = pq.read_table(out).to_pandas().sort_values("id")
        return t["cluster"].to_numpy(), t["is_core"].to_numpy(dtype=bool)
    z = np.load(f"{out}.npz" if not str(out).endswith(".npz") else out)
    return z["labels"], z["core"].astype(bool)


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    (la, ca), (lb, cb) = a, b
    if not np.array_equal(ca, cb) or not np.array_equal(la == -1, lb == -1):
        return False
    pairs = set(zip(la[ca].tolist(), lb[cb].tolist(), strict=True))
    return len(pairs) == len(set(la[ca].tolist())) == len(set(lb[cb].tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--sklearn-max", type=int, default=3_000_000)
    parser.add_argument("--dbscan-max", type=int, default=100_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps", type=float, default=None, help="skip the knee search")
    parser.add_argument(
        "--floor", action="store_true", help="also time the Spark floor (one routed pass)"
    )
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        npy = _dataset(n, args.seed)
        eps = args.eps if args.eps is not None else knee_eps(np.load(npy))
        print(f"\n== n={n:,}  eps={eps:.4f} (knee)  minPoints={MIN_POINTS}", flush=True)
        results: dict[str, dict] = {}
        outs = {
            "ours": DATA / f"labels_ours_{n}.parquet",
            "sklearn": DATA / f"labels_sklearn_{n}.npz",
            "dbscan": DATA / f"labels_dbscan_{n}.npz",
            "floor": DATA / f"labels_floor_{n}.parquet",
        }
        for which in ("ours", "floor", "dbscan", "sklearn"):
            limit = {
                "ours": 10**12,
                "floor": 10**12 if args.floor else 0,
                "sklearn": args.sklearn_max,
                "dbscan": args.dbscan_max,
            }
            if n > limit[which]:
                continue
            results[which] = _measure(which, npy, eps, outs[which])
            if which in ("ours", "dbscan") and "seconds" in results[which]:
                # PSS from a second run (see _measure); scikit-learn is one process, where
                # PSS and the resident set differ only by shared libraries
                again = _measure(which, npy, eps, outs[which], pss=True)
                results[which]["peak_pss_gib"] = again.get("peak_pss_gib")
                results[which]["pss_run_seconds"] = again.get("seconds")
            print(f"  {which:8s} {json.dumps(results[which])}", flush=True)
        ref = next((w for w in ("sklearn", "dbscan") if "seconds" in results.get(w, {})), None)
        parity = None
        if ref and "seconds" in results.get("ours", {}):
            parity = _same(_load_labels("ours", outs["ours"]), _load_labels(ref, outs[ref]))
        row = {"n": n, "eps": eps, "parity_vs": ref, "parity": parity, **results}
        for other in ("sklearn", "dbscan", "floor"):
            if "seconds" in results.get(other, {}) and "seconds" in results.get("ours", {}):
                row[f"time_ratio_vs_{other}"] = (
                    results["ours"]["seconds"] / results[other]["seconds"]
                )
                if "repeat_seconds" in results[other] and "repeat_seconds" in results["ours"]:
                    row[f"repeat_time_ratio_vs_{other}"] = (
                        results["ours"]["repeat_seconds"] / results[other]["repeat_seconds"]
                    )
                row[f"memory_ratio_vs_{other}"] = (
                    results["ours"]["peak_gib"] / results[other]["peak_gib"]
                )
                if results[other].get("peak_pss_gib") and results["ours"].get("peak_pss_gib"):
                    row[f"pss_ratio_vs_{other}"] = (
                        results["ours"]["peak_pss_gib"] / results[other]["peak_pss_gib"]
                    )
        print(f"  ratios: { {k: round(v, 3) for k, v in row.items() if 'ratio' in k} }")
        print(f"  parity with {ref}: {parity}")
        rows.append(row)
    print("\n" + json.dumps(rows))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        which, npy, eps, out = sys.argv[2], Path(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5])
        print(json.dumps(RUNNERS[which](npy, eps, out)), flush=True)
    else:
        main()
