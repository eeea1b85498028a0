"""Benchmark: the whole demo pipeline at scale on Spark local[2].

    python bench/pipeline.py                      # 1,000,000 customers
    python bench/pipeline.py --customers 20000 --markdown

Runs exactly what ``spark-clustering demo`` runs (:func:`spark_clustering.jobs.demo.run_demo`):
generate the customers (Spark), then ``segment`` with the packaged defaults (raw transactions
prepared by the demo's prepare spec, UMAP to 3-D, DBSCAN with eps at the k-distance knee,
evaluation), in this process on ``local[2]`` with a fixed driver heap. Prints the wall time of
every stage (the timings ``segment`` records in its summary), the total, the peak resident
memory of the process tree (this Python, the JVM and its Python workers, sampled every 0.5 s),
and the adjusted Rand index of the clusters against the generator's latent segments (DBSCAN
noise counted as one more cluster). ``--markdown`` adds a block of table rows for
bench/RESULTS.md. MLflow tracking is off, so the store does not weigh on the timings.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class PeakMemory:
    """Peak resident bytes of this process and its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.5) -> None:
        import psutil

        self._me = psutil.Process()
        self._every = every
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = self._me.memory_info().rss
        for child in self._me.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a worker may exit meanwhile
                total += child.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self._every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stage_rows(seconds: dict[str, float], stages: dict[str, float]) -> list[tuple[str, float]]:
    """(stage, wall seconds) from generation to the ARI; ``segment``'s own stages in between,
    then what ``segment`` spent outside them (tracking, committing the outputs)."""
    rows = [("generate", seconds["generate"])]
    rows += [(f"segment: {name}", s) for name, s in stages.items()]
    rows.append(("segment: outside its stages", seconds["segment"] - sum(stages.values())))
    rows.append(("ARI against the truth", seconds["ari"]))
    return rows


def markdown(customers: int, rows: list[tuple[str, float]], total: float, outcome: str) -> str:
    """A block for bench/RESULTS.md: the outcome line, then one table row per stage."""
    lines = [
        f"Customers: {customers:,}; {outcome}.",
        "",
        "| Stage | wall s | share |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {s:.1f} | {s / total:.0%} |" for name, s in rows]
    lines.append(f"| **total** | **{total:.1f}** | 100% |")
    return "\n".join(lines)


def kmeans_reference(spark, work: Path, seed: int) -> tuple[float, float]:
    """How separable the latent segments are in the demo's features, for scale: the ARI of
    MLlib KMeans with k = 5 (the true number of segments) on the same prepared features, and
    the ARI of our clusters over the customers DBSCAN did not call noise."""
    from pyspark.ml.clustering import KMeans

    from spark_clustering.features.prepare import prepare_features
    from spark_clustering.features.spec import load_spec
    from spark_clustering.jobs.demo import adjusted_rand_index

    spec = load_spec(str(work / "prepare.toml"))
    raw = spark.read.parquet(str(work / "generated" / "transactions"))
    prepared = prepare_features(spark, spec, raw)
    truth = spark.read.parquet(str(work / "generated" / "segments"))
    km = KMeans(k=5, seed=seed, featuresCol="features", predictionCol="cluster")
    kmeans_ari, _ = adjusted_rand_index(
        km.fit(prepared.features).transform(prepared.features), truth, "customer_id", "cluster",
        "segment",
    )  # fmt: skip
    assigned = spark.read.parquet(str(work / "assignments"))
    clustered_ari, _ = adjusted_rand_index(
        assigned.where("cluster >= 0"), truth, "customer_id", "cluster", "segment"
    )
    return kmeans_ari, clustered_ari


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--driver-memory",
        default=os.environ.get("BENCH_DRIVER_MEMORY", "8g"),
        help="Spark driver heap (local mode; default 8g or BENCH_DRIVER_MEMORY)",
    )
    p.add_argument("--work", default=str(ROOT / "bench" / "data" / "pipeline"))
    p.add_argument("--keep", action="store_true", help="keep the generated data and outputs")
    p.add_argument("--markdown", action="store_true", help="print rows for bench/RESULTS.md")
    p.add_argument(
        "--reference",
        action="store_true",
        help="also KMeans k=5 on the same features and our ARI without noise rows (for scale)",
    )
    args = p.parse_args(argv)
    if args.customers < 1:
        p.error(f"--customers={args.customers}; accepted: >= 1")

    # bench/umap.py would shadow umap-learn, which the UMAP fit imports as ``umap``
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    from spark_clustering.jobs.demo import run_demo
    from spark_clustering.session import get_spark

    # the stage lines segment logs as each stage ends, as `spark-clustering demo` shows them
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    work = Path(args.work) / f"n{args.customers}"
    shutil.rmtree(work, ignore_errors=True)
    print(f"== {args.customers:,} customers, seed {args.seed}, work dir {work}", flush=True)
    load_before = os.getloadavg()
    spark = get_spark(
        "bench-pipeline",
        master="local[2]",
        conf={"spark.driver.memory": args.driver_memory},
        gpu="off",
    )
    with PeakMemory() as memory:
        result = run_demo(
            spark,
            args.customers,
            str(work),
            seed=args.seed,
            tracking="none",
            echo=lambda line: print(line, flush=True),
        )
    load_after = os.getloadavg()
    reference = kmeans_reference(spark, work, args.seed) if args.reference else None
    spark.stop()

    seg = result.segment.summary
    total = result.seconds["total"]
    rows = stage_rows(result.seconds, seg["stages"]["seconds"])
    print()
    print(f"{'stage':40} {'wall s':>9} {'share':>6}")
    for name, s in rows:
        print(f"{name:40} {s:9.1f} {s / total:6.0%}")
    print(f"{'total':40} {total:9.1f}")
    noise_share = seg["n_noise"] / max(seg["customers"], 1)
    outcome = (
        f"{seg['customers']:,} segmented, {seg['n_clusters']} clusters, noise {noise_share:.1%}, "
        f"adjusted Rand index {result.ari:.3f}, peak RSS {memory.peak / 2**30:.2f} GiB "
        f"(driver heap {args.driver_memory}), load average {load_before[0]:.1f} before and "
        f"{load_after[0]:.1f} after"
    )
    if reference is not None:
        outcome += (
            f"; reference on the same prepared features: MLlib KMeans k=5 ARI {reference[0]:.3f}, "
            f"our clusters without the noise rows ARI {reference[1]:.3f}"
        )
    print(outcome)
    if args.markdown:
        print()
        print(markdown(args.customers, rows, total, outcome))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
