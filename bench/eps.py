"""eps benchmark: knee of sampled k-distances vs the knee of the exact full k-NN curve.

Data: ``blobs_with_noise(n)`` (the DBSCAN benchmark data), k = minPoints. The exact full curve
is computed twice: with the same distributed code and every row a query
(``sampleSize = n``), and with scipy's ``cKDTree`` on one node (2 threads). The sampled
``suggest_eps`` runs for several seeds; printed: each knee's relative error and the cost
ratios (sampled time / exact time).

    python bench/eps.py --n 1000000 --k 10 --sample 10000 --seeds 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datasets import blobs_with_noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--sample", type=int, default=10_000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--plot", default="")
    a = p.parse_args()

    import pandas as pd
    from pyspark.sql import functions as F
    from scipy.spatial import cKDTree

    from spark_clustering import k_distances, suggest_eps
    from spark_clustering.neighbors import knee_of_sorted
    from spark_clustering.session import get_spark

    spark = get_spark(
        "bench-eps",
        master="local[2]",
        conf={"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "6g"},
        gpu="off",
    )
    x = blobs_with_noise(a.n, seed=0)
    pdf = pd.DataFrame(x, columns=["a", "b", "c"])
    df = (
        spark.createDataFrame(pdf)
        .repartition(4)
        .select(F.array("a", "b", "c").alias("features"))
        .cache()
    )
    df.count()

    t0 = time.perf_counter()
    tree = cKDTree(x)
    full_scipy = np.sort(tree.query(x, k=a.k, workers=2)[0][:, -1])
    t_scipy = time.perf_counter() - t0
    eps_full = knee_of_sorted(full_scipy)
    print(
        f"exact full curve, scipy cKDTree on one node (2 threads): {t_scipy:.1f} s; "
        f"knee eps = {eps_full:.5f}"
    )

    t0 = time.perf_counter()
    full_spark = k_distances(df, a.k, sampleSize=a.n, maxSampleSize=a.n)
    t_spark_full = time.perf_counter() - t0
    same = np.allclose(full_spark, full_scipy, rtol=1e-12)
    print(
        f"exact full curve, our distributed code with all {a.n} rows as queries: "
        f"{t_spark_full:.1f} s; equal to scipy: {same}"
    )

    errors, times = [], []
    for seed in range(a.seeds):
        t0 = time.perf_counter()
        g = suggest_eps(df, a.k, sampleSize=a.sample, seed=seed)
        dt = time.perf_counter() - t0
        err = abs(g.eps - eps_full) / eps_full
        errors.append(err)
        times.append(dt)
        print(
            f"sampled (sampleSize={a.sample}, seed={seed}): eps = {g.eps:.5f}, "
            f"error {100 * err:.2f}%, {dt:.1f} s"
        )
        if a.plot and seed == 0:
            g.plot(a.plot)
    t_s = float(np.mean(times))
    print(f"RATIO max knee error {100 * max(errors):.2f}% (target <= 5%)")
    print(f"RATIO cost sampled / exact-distributed: {t_s / t_spark_full:.3f} (target <= 0.1)")
    print(f"RATIO cost sampled / exact-scipy-one-node: {t_s / t_scipy:.3f}")


if __name__ == "__main__":
    main()
