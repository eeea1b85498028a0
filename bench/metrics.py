"""Metrics benchmark: evaluate() on 1M and 3M clustered points; sklearn where it can run.

Data: ``blobs_with_noise(n)`` labelled by k-means (8 clusters) with points farther than 2.5x
their cluster's RMS distance from its centre relabelled -1 (noise). For each size: wall time of
``evaluate`` (all figures) on local[2], the silhouette's 95% CI width, scikit-learn's exact
Davies-Bouldin and Calinski-Harabasz on the same rows (relative difference), and Spark's own
``ClusteringEvaluator`` (squared Euclidean silhouette, noise counted as a cluster) for
contrast. On a 20000-row subset every figure is compared with scikit-learn's exact one.

    python bench/metrics.py --sizes 1000000 3000000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datasets import blobs_with_noise


def labelled(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import MiniBatchKMeans

    x = blobs_with_noise(n, seed=seed)
    km = MiniBatchKMeans(8, random_state=seed, n_init=3, batch_size=4096).fit(x[:200_000])
    y = km.predict(x)
    dist = np.linalg.norm(x - km.cluster_centers_[y], axis=1)
    for c in range(8):
        sel = y == c
        if sel.any():
            cut = 2.5 * np.sqrt((dist[sel] ** 2).mean())
            y[sel & (dist > cut)] = -1
    return x, y


def frame(spark, x: np.ndarray, y: np.ndarray):
    import pandas as pd
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    pdf = pd.DataFrame(x, columns=["a", "b", "c"])
    pdf["cluster"] = y.astype(np.int32)
    return (
        spark.createDataFrame(pdf)
        .repartition(4)
        .select(array_to_vector(F.array("a", "b", "c")).alias("features"), "cluster")
        .cache()
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000])
    p.add_argument("--check-rows", type=int, default=20_000)
    a = p.parse_args()

    from pyspark.ml.evaluation import ClusteringEvaluator
    from sklearn.metrics import (
        calinski_harabasz_score,
        davies_bouldin_score,
        silhouette_score,
    )

    from spark_clustering import evaluate
    from spark_clustering.session import get_spark

    spark = get_spark(
        "bench-metrics",
        master="local[2]",
        conf={"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "8g"},
        gpu="off",
    )

    # exactness on a subset where scikit-learn's O(n^2) silhouette can run
    x, y = labelled(a.check_rows, seed=1)
    df = frame(spark, x, y)
    m = evaluate(df, sampleSize=a.check_rows)
    keep = y != -1
    ref = {
        "silhouette": silhouette_score(x[keep], y[keep]),
        "silhouette_sqeuclidean": silhouette_score(x[keep], y[keep], metric="sqeuclidean"),
        "davies_bouldin": davies_bouldin_score(x[keep], y[keep]),
        "calinski_harabasz": calinski_harabasz_score(x[keep], y[keep]),
    }
    for name, value in ref.items():
        print(
            f"{a.check_rows} rows: {name} ours {m[name]:.12g} sklearn {value:.12g} "
            f"rel diff {abs(m[name] - value) / abs(value):.1e}"
        )
    m = evaluate(df, sampleSize=2000, repeats=5)
    print(
        f"{a.check_rows} rows, sampled silhouette (2000 x 5): {m['silhouette']:.4f} "
        f"CI [{m['silhouette_ci'][0]:.4f}, {m['silhouette_ci'][1]:.4f}] vs exact "
        f"{ref['silhouette']:.4f}"
    )
    df.unpersist()

    for n in a.sizes:
        x, y = labelled(n)
        df = frame(spark, x, y)
        df.count()
        t0 = time.perf_counter()
        m = evaluate(df)
        t = time.perf_counter() - t0
        keep = y != -1
        t1 = time.perf_counter()
        db = davies_bouldin_score(x[keep], y[keep])
        ch = calinski_harabasz_score(x[keep], y[keep])
        t_sk = time.perf_counter() - t1
        width = m["silhouette_ci"][1] - m["silhouette_ci"][0]
        print(
            f"n={n}: evaluate() all figures {t:.1f} s on local[2]; "
            f"silhouette {m['silhouette']:.4f} CI width {width:.4f} "
            f"({m['silhouette_sample_rows']} rows x 5); sqeuclidean "
            f"{m['silhouette_sqeuclidean']:.4f}; noise {m['noise_fraction']:.3f}, "
            f"coverage {m['coverage']:.3f}, clusters {m['n_clusters']}"
        )
        print(
            f"n={n}: DB rel diff vs sklearn {abs(m['davies_bouldin'] - db) / db:.1e}, "
            f"CH rel diff {abs(m['calinski_harabasz'] - ch) / ch:.1e} "
            f"(sklearn DB+CH on one node {t_sk:.1f} s)"
        )
        t2 = time.perf_counter()
        spark_sil = ClusteringEvaluator(predictionCol="cluster").evaluate(df)
        t_spark = time.perf_counter() - t2
        print(
            f"n={n}: Spark ClusteringEvaluator silhouette (sq. Euclidean, noise as a cluster) "
            f"{spark_sil:.4f} in {t_spark:.1f} s"
        )
        print(f"RATIO n={n}: evaluate() / ClusteringEvaluator time {t / t_spark:.1f}")
        df.unpersist()


if __name__ == "__main__":
    main()
