"""Benchmark: the explained segments' rules, scikit-learn trees on the driver against Spark MLlib.

    python bench/explain.py                          # 1,000,000 customers, 10 segments
    python bench/explain.py --customers 100000 --segments 12

Customers with 8 named features in ``--segments`` groups of different sizes (the layout of
bench/identity.py), written to Parquet and read back as the segment job reads its profile source.
Both sides make the rule of every segment the same way: a depth-3 one-against-the-rest tree on the
same hashed sample of at most 50,000 customers, its leaf holding the most of the segment, and the
rule's precision and recall over every customer.

* ours: :func:`spark_clustering.jobs.explain.explain` (figures and lifts, then the trees in
  scikit-learn on the driver and all rules measured in one Spark pass);
* reference: the same figures, then Spark MLlib's ``DecisionTreeClassifier`` fitted per segment
  in Spark on the same sample and each rule measured in its own pass (what ``explain`` did before
  2026-12-07).

Printed: both times (the figures stage once, timed apart), the ratio, and the mean precision
and recall of the rules each side found (the rules differ in their thresholds: MLlib bins each
feature into 32 quantile bins, scikit-learn splits between sorted values). Everything on
``local[2]`` in this process.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "explain"
NAMES = ["recency", "frequency", "monetary", "tenure", "basket", "share_a", "share_b", "channels"]


def _customers(spark, n: int, segments: int, path: Path) -> None:
    """``customer_id, cluster`` and the 8 features: segment g of share ~ (g+1) / sum."""
    from pyspark.sql import functions as F

    from spark_clustering.sampling import normal, uniform

    cid = F.col("customer_id")
    df = spark.range(1, n + 1, numPartitions=8).withColumnRenamed("id", "customer_id")
    weights = [g + 1 for g in range(segments)]
    bounds = [sum(weights[: g + 1]) / sum(weights) for g in range(segments)]
    u = uniform(0, "group", cid)
    group = F.lit(segments - 1)
    for g in reversed(range(segments - 1)):
        group = F.when(u < bounds[g], g).otherwise(group)
    cols = []
    for j, name in enumerate(NAMES):
        centres = F.array(*[F.lit(float((g * (j + 3)) % 7)) for g in range(segments)])
        cols.append((F.element_at(centres, group + 1) + normal(0, f"x{j}", cid)).alias(name))
    df.select("customer_id", group.alias("cluster"), *cols).write.mode("overwrite").parquet(
        str(path)
    )


def _mllib_rules(joined, names, id_col, largest, sample: int, total: int, seed: int) -> list:
    """The reference: per segment, Spark MLlib's tree on the hashed sample, the leaf holding most
    of the segment, and its precision and recall in a pass of its own."""
    from pyspark.ml.classification import DecisionTreeClassifier
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    from spark_clustering import sampling
    from spark_clustering.jobs.explain import TREE_DEPTH, _condition, simplify

    fit_on = joined.where(sampling.uniform(seed, "explain", id_col) < min(1.0, sample / total))
    train = (
        VectorAssembler(inputCols=list(names), outputCol="__x", handleInvalid="keep")
        .transform(fit_on.fillna(0.0, subset=list(names)))
        .persist()
    )
    found = []
    for c in largest:
        labelled = train.withColumn("__y", (F.col("cluster") == c).cast("double"))
        model = DecisionTreeClassifier(
            featuresCol="__x", labelCol="__y", maxDepth=TREE_DEPTH, seed=seed
        ).fit(labelled)
        leaves = _leaves(model, names)
        if not leaves:  # no leaf predicts the segment: no rule, as in ours
            found.append(None)
            continue
        held = labelled.where(F.col("__y") == 1.0)
        totals = held.agg(
            *[
                F.sum(_condition(simplify(conds)).cast("long")).alias(f"l{i}")
                for i, conds in enumerate(leaves)
            ]
        ).first()
        best = max(range(len(leaves)), key=lambda i: (int(totals[f"l{i}"] or 0), -i))
        hit = _condition(simplify(leaves[best]))
        figures = joined.agg(
            F.sum((hit & (F.col("cluster") == c)).cast("long")).alias("tp"),
            F.sum(hit.cast("long")).alias("predicted"),
            F.sum((F.col("cluster") == c).cast("long")).alias("size"),
        ).first()
        tp = int(figures["tp"] or 0)
        found.append((tp / max(int(figures["predicted"] or 0), 1), tp / int(figures["size"])))
    train.unpersist()
    return found


def _leaves(model, names) -> list:
    """The leaves predicting 1 of an MLlib tree, read from its Java nodes."""
    out: list = []

    def walk(node, path):
        if node.getClass().getSimpleName() == "LeafNode":
            if node.prediction() == 1.0:
                out.append(path)
            return
        split = node.split()
        feature, threshold = names[split.featureIndex()], float(split.threshold())
        walk(node.leftChild(), [*path, (feature, "<=", threshold)])
        walk(node.rightChild(), [*path, (feature, ">", threshold)])

    walk(model._java_obj.rootNode(), [])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--segments", type=int, default=10)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "lib"))
    from spark_clustering.jobs.explain import explain
    from spark_clustering.session import get_spark

    spark = get_spark("bench-explain", master="local[2]", conf={"spark.driver.memory": "6g"})
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    _customers(spark, args.customers, args.segments, DATA / "customers")
    df = spark.read.parquet(str(DATA / "customers"))
    assigned, source = df.select("customer_id", "cluster"), df.drop("cluster")

    explain(assigned, source, NAMES, "customer_id")  # warm-up: JIT, Python workers, file cache
    start = time.perf_counter()
    ours = explain(assigned, source, NAMES, "customer_id")
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    explain(assigned, source, NAMES, "customer_id", top=0)  # the figures alone
    figures_s = time.perf_counter() - start

    joined = assigned.join(source, "customer_id").persist()
    largest = [s["cluster"] for s in sorted(ours.profiles, key=lambda s: -s["size"])][:12]
    start = time.perf_counter()
    reference = _mllib_rules(joined, NAMES, "customer_id", largest, 50_000, args.customers, 0)
    reference_s = time.perf_counter() - start + figures_s
    joined.unpersist()

    by_cluster = {s["cluster"]: s for s in ours.profiles}
    both = [(by_cluster[c], r) for c, r in zip(largest, reference, strict=True)
            if r is not None and by_cluster[c].get("rule")]  # fmt: skip
    print(f"{args.customers:,} customers, {args.segments} segments; rules found: ours "
          f"{sum(1 for c in largest if by_cluster[c].get('rule'))}, reference "
          f"{sum(1 for r in reference if r is not None)}")  # fmt: skip
    print(f"figures (size, means, medians, lifts): {figures_s:.1f} s")
    print(f"ours (figures + scikit-learn trees + one pass): {ours_s:.1f} s")
    print(f"reference (figures + Spark MLlib trees, a pass per rule): {reference_s:.1f} s")
    print(f"ours / reference: {ours_s / reference_s:.2f}")
    if both:
        n = len(both)
        ours_pr = (sum(s["precision"] for s, _ in both) / n, sum(s["recall"] for s, _ in both) / n)
        ref_pr = (sum(r[0] for _, r in both) / n, sum(r[1] for _, r in both) / n)
        print(f"on the {n} segments both found a rule, mean precision / recall: ours "
              f"{ours_pr[0]:.3f} / {ours_pr[1]:.3f}, "
              f"reference {ref_pr[0]:.3f} / {ref_pr[1]:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
