"""What distribution costs: the same jobs on local[2] and on the two-worker standalone cluster.

Both run on this machine with the same two cores: ``local[2]`` is one JVM whose tasks share the
driver's memory; the cluster (``scripts/local-cluster.sh``: a master and two one-core workers on
127.0.0.1) runs each task in an executor JVM of its own, reached over the loopback network, with
the package shipped as the ``--py-files`` zip. Each job is submitted with ``spark-submit`` to each
master in turn, in the same run, interleaved (local, cluster, local, cluster, ... for
``--rounds``), and the fastest run of each is compared. The Spark event log of every run says
where the time went: task run time, task deserialisation, GC, shuffle bytes and fetch waits.

    python bench/cluster.py --dbscan 1000000 3000000 --customers 100000

DBSCAN: the bench/dbscan.py data (3-D blobs, 27x density range, 5% noise), minPoints 10, eps
from the k-distance knee; timed inside the driver: fit + label every row + write Parquet, after
an untimed warm-up run on the first ``--warm-up`` rows (as bench/dbscan.py; its tasks are in the
event-log sums).
Segment: ``spark_jobs/segment_customers.py`` on generated transactions with examples/segment.toml
(prepare, UMAP to 3-D, DBSCAN with eps at the knee, evaluation), timed as the job's own total.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
sys.path.insert(0, str(ROOT / "tests"))

from submit_support import event_logs, spark_submit  # noqa: E402

DBSCAN_DRIVER = """
import json, sys, time
from spark_clustering import DBSCAN
from spark_clustering.session import get_spark
spark = get_spark("bench-cluster-dbscan", gpu="off")
df = spark.read.parquet(sys.argv[1])


def once(data, out):
    model = DBSCAN(eps=float(sys.argv[2]), minPoints=10).fit(data)
    model.transform(data).select("id", "cluster", "is_core").write.mode("overwrite").parquet(out)
    return model


if int(sys.argv[4]):  # untimed warm-up on the first rows, as bench/dbscan.py times
    once(df.limit(int(sys.argv[4])), sys.argv[3] + ".warm-up").unpersist()
start = time.monotonic()
model = once(df, sys.argv[3])
print("RESULT", json.dumps({"seconds": time.monotonic() - start, "clusters": model.numClusters}))
spark.stop()
"""


def _start_cluster(state: Path, memory: str) -> str:
    env = dict(os.environ, CLUSTER_DIR=str(state), PYTHON=sys.executable, WORKER_MEMORY=memory)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "local-cluster.sh"), "start"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def _stop_cluster(state: Path) -> None:
    env = dict(os.environ, CLUSTER_DIR=str(state), PYTHON=sys.executable)
    subprocess.run(["bash", str(ROOT / "scripts" / "local-cluster.sh"), "stop"], env=env,
                   capture_output=True, check=False)  # fmt: skip


def _zip() -> Path:
    out = DATA / "dist"
    subprocess.run(["bash", str(ROOT / "scripts" / "build-dist.sh"), str(out)],
                   env=dict(os.environ, ZIP_ONLY="1"), check=True, capture_output=True)  # fmt: skip
    return next(out.glob("spark_clustering-*.zip"))


def where_time_went(event_dir: Path) -> dict[str, float]:
    """Sums over every task of one run's event log (seconds and MiB)."""
    sums: dict[str, float] = defaultdict(float)
    (log,) = event_logs(event_dir)
    with open(log, encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            if event.get("Event") != "SparkListenerTaskEnd":
                continue
            m = event.get("Task Metrics") or {}
            sums["tasks"] += 1
            sums["run_s"] += m.get("Executor Run Time", 0) / 1e3
            sums["deserialize_s"] += m.get("Executor Deserialize Time", 0) / 1e3
            sums["gc_s"] += m.get("JVM GC Time", 0) / 1e3
            sums["result_ser_s"] += m.get("Result Serialization Time", 0) / 1e3
            read = m.get("Shuffle Read Metrics") or {}
            write = m.get("Shuffle Write Metrics") or {}
            sums["fetch_wait_s"] += read.get("Fetch Wait Time", 0) / 1e3
            sums["remote_read_mib"] += read.get("Remote Bytes Read", 0) / 2**20
            sums["local_read_mib"] += read.get("Local Bytes Read", 0) / 2**20
            sums["shuffle_write_mib"] += write.get("Shuffle Bytes Written", 0) / 2**20
            sums["shuffle_write_s"] += write.get("Shuffle Write Time", 0) / 1e9
    return dict(sums)


def _run(script: Path, args: list[str], zip_path: Path, work: Path, master: str,
         memory: str) -> dict:  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)  # a run of its own, not on top of the last one
    work.mkdir(parents=True)
    events = work / "events"
    conf = {"spark.executor.memory": memory, "spark.sql.shuffle.partitions": "8"}
    start = time.monotonic()
    proc = spark_submit(script, args, zip_path, work, master=master, event_dir=events,
                        conf=conf, timeout=3600)  # fmt: skip
    wall = time.monotonic() - start
    if proc.returncode != 0:
        # spark-submit's PythonRunner merges the driver's stderr into its stdout
        raise SystemExit(
            f"{script.name} on {master} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    result = {"wall_s": wall, **where_time_went(events)}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result.update(json.loads(line[len("RESULT ") :]))
    summary = work / "segments" / "runs"
    if summary.exists():
        (path,) = summary.rglob("summary.json")
        seg = json.loads(path.read_text())
        result["seconds"] = float(sum(seg["stages"]["seconds"].values()))
        result["clusters"] = seg["n_clusters"]
    return result


def _best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def _report(name: str, local: dict, cluster: dict) -> str:
    ratio = cluster["seconds"] / local["seconds"]
    clusters = f"{local.get('clusters')} / {cluster.get('clusters')}"
    parts = [
        f"{name}: local[2] {local['seconds']:.1f} s, cluster {cluster['seconds']:.1f} s, "
        f"ratio {ratio:.2f}x (clusters {clusters})"
    ]
    keys = ("tasks", "run_s", "deserialize_s", "gc_s", "fetch_wait_s", "shuffle_write_s",
            "remote_read_mib", "local_read_mib", "shuffle_write_mib")  # fmt: skip
    for key in keys:
        a, b = local.get(key, 0), cluster.get(key, 0)
        parts.append(f"    {key:18} local {a:10.1f}   cluster {b:10.1f}")
    return "\n".join(parts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dbscan", type=int, nargs="*", default=[1_000_000, 3_000_000])
    p.add_argument("--customers", type=int, nargs="*", default=[100_000])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument(
        "--warm-up",
        type=int,
        default=20_000,
        help="DBSCAN: rows of an untimed first run in the same driver (0: cold)",
    )
    p.add_argument("--memory", default="6g", help="executor memory (and per-worker memory)")
    p.add_argument("--events", help="only print the breakdown of the event logs under this folder")
    args = p.parse_args()
    if args.events:
        for run in sorted(Path(args.events).iterdir()):
            if not event_logs(run / "events"):
                continue
            sums = where_time_went(run / "events")
            print(run.name, " ".join(f"{k}={v:.1f}" for k, v in sums.items()))
        return 0
    sys.path.insert(0, str(HERE))
    import numpy as np

    from dbscan import _dataset, _parquet, knee_eps

    zip_path = _zip()
    state = DATA / "cluster-state"
    master = _start_cluster(state, args.memory)
    lines = [f"cluster {master}: 2 workers x 1 core, executors {args.memory}"]
    try:
        driver = DATA / "cluster_dbscan_driver.py"
        driver.write_text(DBSCAN_DRIVER)
        for n in args.dbscan:
            npy = _dataset(n, 0)
            eps = knee_eps(np.load(npy))
            runs: dict[str, list[dict]] = {"local": [], "cluster": []}
            for r in range(args.rounds):
                for label, m in (("local", "local[2]"), ("cluster", master)):
                    work = DATA / "cluster-runs" / f"dbscan-{n}-{label}-{r}"
                    out = work / "labels"
                    res = _run(driver, [str(_parquet(npy)), repr(eps), str(out),
                                        str(args.warm_up)], zip_path, work, m,
                               args.memory)  # fmt: skip
                    runs[label].append(res)
                    print(f"dbscan {n:,} {label} round {r}: {res['seconds']:.1f} s", flush=True)
            lines.append(_report(f"DBSCAN {n:,} points (eps {eps:.4f})",
                                 _best(runs["local"]), _best(runs["cluster"])))  # fmt: skip
        for customers in args.customers:
            gen = DATA / f"generated-{customers}"
            if not (gen / "transactions").exists():
                subprocess.run([sys.executable, "-m", "spark_clustering.cli", "generate",
                                "--customers", str(customers), "--output", str(gen)],
                               check=True)  # fmt: skip
            # examples/segment.toml names its prepare spec relative to the checkout
            config = DATA / "cluster-segment.toml"
            config.write_text((ROOT / "examples" / "segment.toml").read_text().replace(
                '"examples/prepare.toml"', f'"{ROOT / "examples" / "prepare.toml"}"'))  # fmt: skip
            runs = {"local": [], "cluster": []}
            for r in range(args.rounds):
                for label, m in (("local", "local[2]"), ("cluster", master)):
                    work = DATA / "cluster-runs" / f"segment-{customers}-{label}-{r}"
                    res = _run(ROOT / "spark_jobs" / "segment_customers.py",
                               ["--config", str(config),
                                "--input", str(gen / "transactions"),
                                "--output", str(work / "segments"), "--gpu", "off"],
                               zip_path, work, m, args.memory)  # fmt: skip
                    runs[label].append(res)
                    print(f"segment {customers:,} {label} round {r}: {res['seconds']:.1f} s",
                          flush=True)  # fmt: skip
            lines.append(_report(f"segment {customers:,} customers",
                                 _best(runs["local"]), _best(runs["cluster"])))  # fmt: skip
    finally:
        _stop_cluster(state)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
