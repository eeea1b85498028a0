"""Benchmark: the automatic segment count against a single fit, on our generator and on CDNOW.

    python bench/autochoice.py                        # 20,000 generated customers and CDNOW
    python bench/autochoice.py --customers 3000 --no-cdnow --markdown

Each data set is segmented in this process on ``local[2]`` with the recipe of
examples/segment.toml (raw transactions prepared, UMAP to 3-D), three ways:

* ``auto``: DBSCAN with ``minPoints`` and ``eps`` left to the automatic choice (the default);
* ``knee``: one DBSCAN fit, ``minPoints = 10``, eps at the knee of the k-distance graph (the
  default before the automatic choice);
* ``kmeans-5``: KMeans with the true number of segments (generator only: 5), on UMAP and
  (``+none``) on the prepared features without reduction, and ``kmeans-auto+none``: KMeans with
  ``k`` left to the automatic choice on the prepared features.

Printed per run: segments, noise share, smallest segment share, whether the targets are met, the
adjusted Rand index against the generator's latent segments (noise as one more cluster), the
wall time of the clustering stages (``k-distance graph`` + ``cluster``, or ``choose``) and of the
whole run, and the ratio of auto to knee for both. ``--markdown`` prints table rows for
bench/RESULTS.md. Tracking is off.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# bench/umap.py would shadow umap-learn: this folder off the path, the CDNOW converter on it
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "examples" / "cdnow"))

CLUSTERING_STAGES = (
    "k-distance graph",
    "cluster (dbscan)",
    "cluster (kmeans)",
    "choose (dbscan)",
    "choose (kmeans)",
)


CLUSTERERS = {
    "dbscan-auto": {"algorithm": "dbscan", "params": {"epsSampleSize": 5000}},
    "dbscan-knee": {
        "algorithm": "dbscan",
        "params": {"eps": "auto", "minPoints": 10, "epsSampleSize": 5000},
    },
    "kmeans-5": {"algorithm": "kmeans", "params": {"k": 5, "seed": 0}},
    "kmeans-auto": {"algorithm": "kmeans", "params": {"seed": 0}},
}
UMAP = {"nComponents": 3, "nNeighbors": 15, "minDist": 0.0, "sampleSize": 5000, "seed": 0}


def _config(transactions: str, spec: str, out: str, run: str) -> dict[str, Any]:
    """``run``: a key of CLUSTERERS, with ``+none`` for no reduction (UMAP otherwise)."""
    clusterer, _, reducer = run.partition("+")
    return {
        "run_date": "2026-12-01",
        "input": {"path": transactions, "kind": "raw", "spec": spec},
        "reducer": {"algorithm": "none"}
        if reducer == "none"
        else {"algorithm": "umap", "params": UMAP},
        "clusterer": CLUSTERERS[clusterer],
        "evaluation": {"sample_size": 2000, "repeats": 3},
        "tracking": {"backend": "none"},
        "output": {"path": out, "scatter_sample": 2000},
    }


def _run(spark: Any, config: dict[str, Any], truth: dict[int, int] | None) -> dict[str, Any]:
    from sklearn.metrics import adjusted_rand_score

    from spark_clustering.jobs.autochoice import Targets, assess
    from spark_clustering.jobs.segment import run_segment
    from spark_clustering.jobs.segment_config import parse_config

    start = time.perf_counter()
    result = run_segment(spark, parse_config(config))
    total = time.perf_counter() - start
    summary = result.summary
    sizes = {int(c): int(n) for c, n in summary["cluster_sizes"].items()}
    count, noise, smallest, within, _ = assess(sizes, Targets())
    ari = None
    if truth is not None:
        rows = (
            spark.read.parquet(result.assignments_path).select("customer_id", "cluster").collect()
        )
        labels = {int(r[0]): int(r[1]) for r in rows}
        ids = sorted(set(labels) & set(truth))
        ari = adjusted_rand_score([truth[i] for i in ids], [labels[i] for i in ids])
    seconds = summary["stages"]["seconds"]
    return {
        "segments": count,
        "noise": noise,
        "smallest": smallest,
        "within": within,
        "ari": ari,
        "clustering_s": sum(v for k, v in seconds.items() if k in CLUSTERING_STAGES),
        "total_s": total,
        "candidates": len(summary.get("auto", {}).get("candidates", [])),
        "chosen": summary.get("auto", {}).get("params"),
    }


def _print(name: str, rows: dict[str, dict[str, Any]], markdown: bool) -> None:
    auto, knee = rows.get("dbscan-auto"), rows.get("dbscan-knee")
    print(f"\n{name}")
    print(f"{'run':<16} {'segments':>8} {'noise':>7} {'smallest':>8} {'targets':>8} {'ARI':>6} "
          f"{'cluster s':>9} {'total s':>8}")  # fmt: skip
    for run, r in rows.items():
        ari = "-" if r["ari"] is None else f"{r['ari']:.3f}"
        print(f"{run:<16} {r['segments']:>8} {r['noise']:>7.1%} {r['smallest']:>8.2%} "
              f"{'met' if r['within'] else 'missed':>8} {ari:>6} {r['clustering_s']:>9.1f} "
              f"{r['total_s']:>8.1f}")  # fmt: skip
    if auto and knee:
        print(f"auto / knee: clustering {auto['clustering_s'] / knee['clustering_s']:.2f}x, "
              f"whole run {auto['total_s'] / knee['total_s']:.2f}x; {auto['candidates']} "
              f"candidates, chosen {auto['chosen']}")  # fmt: skip
    if markdown:
        for run, r in rows.items():
            ari = "-" if r["ari"] is None else f"{r['ari']:.3f}"
            print(f"| {name} | {run} | {r['segments']} | {r['noise']:.1%} | {r['smallest']:.2%} "
                  f"| {'met' if r['within'] else 'missed'} | {ari} | {r['clustering_s']:.1f} "
                  f"| {r['total_s']:.1f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--no-cdnow", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from spark_clustering.features.generate import generate_transactions as generate
    from spark_clustering.session import get_spark

    spark = get_spark("bench-autochoice", master="local[2]", conf={"spark.driver.memory": "6g"})
    work = Path(tempfile.mkdtemp(prefix="bench-auto-"))
    try:
        gen = work / "generated"
        out = generate(spark, args.customers, str(gen), seed=0)
        latent = spark.read.parquet(out.segments).select("customer_id", "segment").collect()
        truth = {int(r[0]): int(r[1]) for r in latent}
        spec = str(ROOT / "examples" / "prepare.toml")
        rows = {run: _run(spark, _config(out.transactions, spec, str(work / run), run), truth)
                for run in ("dbscan-auto", "dbscan-knee", "kmeans-5", "kmeans-5+none",
                            "kmeans-auto+none")}  # fmt: skip
        _print(f"generator, {args.customers} customers", rows, args.markdown)
        if not args.no_cdnow:
            import convert

            tx = str(work / "cdnow")
            convert.convert(spark, tx)
            spec = str(ROOT / "examples" / "cdnow" / "prepare.toml")
            rows = {run: _run(spark, _config(tx, spec, str(work / f"cdnow-{run}"), run), None)
                    for run in ("dbscan-auto", "dbscan-knee")}  # fmt: skip
            _print(f"CDNOW, {convert.CUSTOMERS} customers", rows, args.markdown)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        spark.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    sys.exit(main())
