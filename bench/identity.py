"""Benchmark: what segment ids, transitions and drift cost in a scheduled re-fit, at 1M customers.

    python bench/identity.py                       # 1,000,000 customers
    python bench/identity.py --customers 100000

Two snapshots of one customer base as features tables (8 named features, five groups of
different sizes; the second snapshot: 5% of the customers lost, 5% new, every value moved by a
little noise). ``segment`` (PCA to 4-D, KMeans k = 5) runs on the first (run date D1), then on
the second (D2): the second run matches its clusters to D1's segments, counts the transitions
and keeps a drift reference. ``score`` then scores the second snapshot with D2's model
(comparing it with the reference). Everything on ``local[2]`` in this process. Printed: each
stage of the D2 run (the timings ``segment`` records), the share of "segment ids",
"transitions" and "drift reference" in the run, the drift stage of ``score``, and, as the
reference for the transition count, pandas computing the same matrix from the two runs'
assignments read into memory (ratio Spark/pandas).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "identity"
NAMES = ["recency", "frequency", "monetary", "tenure", "basket", "share_a", "share_b", "channels"]


def _features(spark, n: int, snapshot: int, path: Path) -> None:
    """``customer_id, features`` for ``n`` base customers (snapshot 1: lost, new, noise)."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    from spark_clustering.features.assemble import FeatureNames
    from spark_clustering.sampling import normal, uniform

    arrivals = int(0.05 * n) if snapshot else 0
    cid = F.col("customer_id")
    df = spark.range(1, n + arrivals + 1, numPartitions=8).withColumnRenamed("id", "customer_id")
    if snapshot:
        df = df.where((cid > n) | (uniform(0, "lost", cid) >= 0.05))
    u = uniform(0, "group", cid)
    group = F.when(u < 0.4, 0).when(u < 0.65, 1).when(u < 0.85, 2).when(u < 0.95, 3).otherwise(4)
    values = []
    for j in range(len(NAMES)):
        centre = F.element_at(F.array(*[F.lit(float((g * (j + 3)) % 7)) for g in range(5)]),
                              group + 1)  # fmt: skip
        noise = 0.6 * normal(0, f"x{j}", cid)
        if snapshot:
            noise = noise + 0.1 * normal(snapshot, f"move{j}", cid)
        values.append(centre + noise)
    df = df.select("customer_id", array_to_vector(F.array(*values)).alias("raw"))
    named = FeatureNames(inputCol="raw", outputCol="features", idCol="customer_id",
                         featureNames=NAMES).transform(df)  # fmt: skip
    named.write.mode("overwrite").parquet(str(path))


def _config(path: Path, features: Path, out: Path) -> str:
    path.write_text(
        f'[input]\npath = "{features}"\nkind = "features"\n'
        '[reducer]\nalgorithm = "pca"\nparams = { k = 4 }\n'
        '[clusterer]\nalgorithm = "kmeans"\nparams = { k = 5, seed = 1 }\n'
        "[evaluation]\nenabled = false\n"
        f'[output]\npath = "{out}"\nscatter_sample = 1000\n'
    )
    return str(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=1_000_000)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "lib"))
    import pandas as pd

    from spark_clustering.jobs.publish import current_run
    from spark_clustering.jobs.score import run_score
    from spark_clustering.jobs.segment import run_segment
    from spark_clustering.jobs.segment_config import load_config
    from spark_clustering.session import get_spark

    spark = get_spark("bench-identity", master="local[2]", conf={"spark.driver.memory": "6g"})
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    out = DATA / "segments"
    for snap, date in ((0, "2026-11-01"), (1, "2026-12-01")):
        _features(spark, args.customers, snap, DATA / f"features{snap}")
        config = load_config(_config(DATA / f"segment{snap}.toml", DATA / f"features{snap}", out),
                             overrides={"run_date": date})  # fmt: skip
        start = time.perf_counter()
        result = run_segment(spark, config)
        wall = time.perf_counter() - start
        print(f"segment {date}: {wall:.1f} s", flush=True)
    seconds = result.summary["stages"]["seconds"]
    total = sum(seconds.values())
    print(f"\nsegment 2026-12-01, {args.customers:,} base customers, stages (s):")
    for name, value in seconds.items():
        print(f"  {name:24} {value:8.1f}  {value / total:6.1%}")
    ours = sum(seconds.get(k, 0.0) for k in ("segment ids", "transitions", "drift reference"))
    print(f"  {'total':24} {total:8.1f}")
    print(
        f"segment ids + transitions + drift reference: {ours:.1f} s, {ours / total:.1%} of the run"
    )
    record = result.summary["segments"]
    print(f"matched by {record['method']}: {record['counts']}")

    start = time.perf_counter()
    scored = run_score(spark, str(out), str(DATA / "features1"), str(DATA / "scored"),
                       run_date="2026-12-02")  # fmt: skip
    score_wall = time.perf_counter() - start
    drift_s = scored["stages"]["seconds"].get("drift", 0.0)
    print(f"score: {score_wall:.1f} s, of which the drift check {drift_s:.1f} s "
          f"({drift_s / score_wall:.1%}); drifted: {scored['drift']['drifted']}")  # fmt: skip

    runs = [current_run(None, str(out), d) for d in ("2026-11-01", "2026-12-01")]
    start = time.perf_counter()
    a = pd.read_parquet(runs[0].assignments, columns=["customer_id", "segment_id"])
    b = pd.read_parquet(runs[1].assignments, columns=["customer_id", "segment_id"])
    merged = a.merge(b, on="customer_id", how="outer", suffixes=("_from", "_to"))
    matrix = merged.groupby(["segment_id_from", "segment_id_to"], dropna=False).size()
    pandas_s = time.perf_counter() - start
    spark_s = seconds.get("transitions", 0.0)
    rows = {(r["from_segment"], r["to_segment"]): r["customers"]
            for r in result.summary["transitions"]["rows"]}  # fmt: skip
    same = sum(rows.values()) == int(matrix.sum())
    print(f"transitions: Spark {spark_s:.1f} s, pandas (read + merge + count) {pandas_s:.1f} s, "
          f"ratio {spark_s / pandas_s:.2f}x; same total: {same}")  # fmt: skip
    timings = {"stages": seconds, "score": scored["stages"]["seconds"]}
    (DATA / "timings.json").write_text(json.dumps(timings, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
