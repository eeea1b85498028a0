"""Explained segments: what sets each segment apart, in the business's own features.

For every segment (noise included, as its own row) computed in Spark over the original, unscaled
features (:func:`explain`):

* size and share of the customers;
* each feature's mean and median, and its **lift**: the standardised difference of the segment's
  mean from the population's, ``(mean_segment - mean_all) / std_all`` (population standard
  deviation; 0 for a constant feature);
* the features that set it apart most (largest ``|lift|``, at least :data:`MIN_LIFT`);
* a **rule**: the leaf of a shallow Spark ML decision tree (one segment against the rest, depth
  :data:`TREE_DEPTH`, fitted on a hashed sample of at most ``sample`` customers, the same on any
  layout) that holds the most of the segment's customers, as readable conditions on the
  features, with its precision and recall measured on every customer;
* a short **name** from its top features ("frequent, high spend, recent"), unique within the run.
  :mod:`.identity` uses it for a new segment; a segment matched to the previous run keeps its
  name, and ``[segments].names`` overrides either.

Rules are fitted for the ``top`` largest segments (default 12); the others get their figures
and name but no rule, and the report groups them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

MIN_LIFT = 0.25
TREE_DEPTH = 3
TOP_FEATURES = 3

#: words for the aggregates the prepare job makes: feature -> (when high, when low)
WORDS: dict[str, tuple[str, str]] = {
    "recency_days": ("lapsed", "recent"),
    "recency": ("lapsed", "recent"),
    "frequency": ("frequent", "infrequent"),
    "monetary": ("high spend", "low spend"),
    "tenure_days": ("long-standing", "new"),
    "tenure": ("long-standing", "new"),
    "avg_basket": ("big baskets", "small baskets"),
    "distinct_channels": ("multichannel", "single channel"),
}


def word(feature: str, lift: float) -> str:
    """How a name says that ``feature`` is high (lift > 0) or low in a segment."""
    if feature in WORDS:
        return WORDS[feature][0 if lift > 0 else 1]
    share = re.match(r"^(?:share_|category_share_)(.+)$", feature)
    if share:
        return f"{share.group(1)} {'lovers' if lift > 0 else 'avoiders'}"
    return f"{'high' if lift > 0 else 'low'} {feature}"


def lifts(
    means: Mapping[str, float | None], population: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Standardised difference of each feature's mean from the population's ``(mean, std)``."""
    out = {}
    for name, (mu, sd) in population.items():
        m = means.get(name)
        out[name] = 0.0 if m is None or not sd else (float(m) - mu) / sd
    return out


def top_features(lift: Mapping[str, float], top: int = TOP_FEATURES) -> list[str]:
    """The features of largest ``|lift|`` (at least :data:`MIN_LIFT`), largest first; ties by
    name so the choice is the same on every run."""
    ranked = sorted((n for n in lift if abs(lift[n]) >= MIN_LIFT), key=lambda n: (-abs(lift[n]), n))
    return ranked[:top]


def names_for(segments: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """A short, unique name per cluster from its top features; noise is "noise"."""
    out: dict[int, str] = {}
    seen: dict[str, int] = {}
    for s in segments:
        c = int(s["cluster"])
        if c == -1:
            out[c] = "noise"
            continue
        words = [word(f, s["lift"][f]) for f in s["top_features"]]
        base = ", ".join(words) if words else "typical"
        seen[base] = seen.get(base, 0) + 1
        out[c] = base if seen[base] == 1 else f"{base} ({seen[base]})"
    return out


def preparation_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the report shows of a preparation (``prepare``'s report.json): rows read and kept,
    the rows dropped and why, customers and features, the features dropped and why."""
    inp = report.get("input", {})
    dropped: dict[str, int] = {}
    for col, v in (inp.get("range_violations") or {}).items():
        if v.get("action") == "drop":
            dropped[f"{col} out of [{v.get('min')}, {v.get('max')}]"] = int(
                v.get("below_min", 0) + v.get("above_max", 0)
            )
    for key, why in (("null_ids", "null id"), ("duplicate_rows_dropped", "duplicate rows")):
        if inp.get(key):
            dropped[why] = int(inp[key])
    future = inp.get("future_timestamps") or {}
    if future.get("rows") and future.get("action") == "drop":
        dropped["timestamp after the cutoff"] = int(future["rows"])
    for col, n in (inp.get("non_numeric") or {}).items():
        dropped[f"{col} not a number (set to null)"] = int(n)
    features = report.get("features") or []
    return {
        "rows_read": inp.get("rows_read"),
        "rows_kept": inp.get("rows_kept"),
        "dropped": {k: v for k, v in dropped.items() if v},
        "customers": report.get("customers"),
        "features": len(features),
        "dropped_constant": list((report.get("clean") or {}).get("dropped_constant") or []),
        "dropped_correlated": [
            f"{d.get('feature')} (|r| = {abs(float(d.get('r') or 0)):.2f} with "
            f"{d.get('correlated_with')})"
            for d in report.get("dropped_correlated") or []
        ],
    }


# ------------------------------------------------------------------------------ decision rules

_SPLIT = re.compile(r"^(If|Else) \(feature (\d+) (<=|>|in|not in) (.+)\)$")


def leaf_rules(
    debug: str, names: Sequence[str]
) -> list[tuple[list[tuple[str, str, float]], float]]:
    """Every leaf of a Spark ML decision tree (``toDebugString``) as ``(conditions,
    prediction)``; a condition is ``(feature, "<=" | ">", threshold)``."""
    lines = [ln.strip() for ln in debug.splitlines()[1:] if ln.strip()]
    leaves: list[tuple[list[tuple[str, str, float]], float]] = []
    path: list[tuple[str, str, float]] = []
    depth_of: list[int] = []  # one entry per open condition: its indent
    indents = [len(ln) - len(ln.lstrip()) for ln in debug.splitlines()[1:] if ln.strip()]
    for text, indent in zip(lines, indents, strict=True):
        while depth_of and depth_of[-1] >= indent:
            depth_of.pop()
            path.pop()
        m = _SPLIT.match(text)
        if m:
            op = m.group(3)
            if op not in ("<=", ">"):
                raise ValueError(f"categorical split {text!r}: only continuous features are used")
            path.append((names[int(m.group(2))], op, float(m.group(4))))
            depth_of.append(indent)
        elif text.startswith("Predict:"):
            leaves.append((list(path), float(text.split(":")[1])))
    return leaves


def simplify(conditions: Sequence[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """One lower and one upper bound per feature (the tightest), in the order first met."""
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    order: list[str] = []
    for name, op, t in conditions:
        if name not in order:
            order.append(name)
        if op == ">":
            low[name] = max(low.get(name, -math.inf), t)
        else:
            high[name] = min(high.get(name, math.inf), t)
    out = []
    for name in order:
        if name in low:
            out.append((name, ">", low[name]))
        if name in high:
            out.append((name, "<=", high[name]))
    return out


def describe(conditions: Sequence[tuple[str, str, float]]) -> str:
    """``frequency > 3.5 and monetary <= 120``; "all customers" for no condition."""
    if not conditions:
        return "all customers"
    return " and ".join(f"{n} {op} {t:.4g}" for n, op, t in conditions)


def _condition(conditions: Sequence[tuple[str, str, float]]) -> Column:
    from pyspark.sql import functions as F

    expr = F.lit(True)
    for name, op, t in conditions:
        col = F.coalesce(F.col(f"`{name}`").cast("double"), F.lit(0.0))
        expr = expr & (col > t if op == ">" else col <= t)
    return expr


# ------------------------------------------------------------------------------------- Spark


def explain(
    assigned: DataFrame,
    source: DataFrame,
    names: Sequence[str],
    id_col: str,
    *,
    top: int = 12,
    sample: int = 50_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per cluster (sorted by label): ``cluster``, ``size``, ``share``, ``mean``, ``median``,
    ``lift``, ``top_features``, ``name``, and for the ``top`` largest segments ``rule`` (text),
    ``conditions``, ``precision`` and ``recall``. See the module docstring."""
    from pyspark.ml.classification import DecisionTreeClassifier
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    from spark_clustering import sampling

    joined = assigned.select(id_col, "cluster").join(source, id_col).persist()
    try:
        cols = {n: F.col(f"`{n}`").cast("double") for n in names}
        pop = joined.agg(
            F.count(F.lit(1)).alias("__n"),
            *[F.mean(c).alias(f"__m{i}") for i, c in enumerate(cols.values())],
            *[F.stddev_pop(c).alias(f"__s{i}") for i, c in enumerate(cols.values())],
        ).first()
        assert pop is not None
        total = int(pop["__n"])
        population = {
            n: (float(pop[f"__m{i}"] or 0.0), float(pop[f"__s{i}"] or 0.0))
            for i, n in enumerate(names)
        }
        aggs = [F.count(F.lit(1)).alias("__size")]
        for i, c in enumerate(cols.values()):
            aggs += [F.mean(c).alias(f"__mean{i}"), F.percentile_approx(c, 0.5).alias(f"__med{i}")]
        out: list[dict[str, Any]] = []
        for row in joined.groupBy("cluster").agg(*aggs).orderBy("cluster").collect():
            means = {n: row[f"__mean{i}"] for i, n in enumerate(names)}
            lift = lifts(means, population)
            out.append(
                {
                    "cluster": int(row["cluster"]),
                    "size": int(row["__size"]),
                    "share": int(row["__size"]) / total if total else 0.0,
                    "mean": means,
                    "median": {n: row[f"__med{i}"] for i, n in enumerate(names)},
                    "lift": lift,
                    "top_features": top_features(lift),
                }
            )
        for s, name in zip(out, names_for(out).values(), strict=True):
            s["name"] = name
        largest = sorted(
            (s for s in out if s["cluster"] != -1), key=lambda s: (-s["size"], s["cluster"])
        )
        if names and len(largest) >= 2:
            fit_on = joined.where(
                sampling.uniform(seed, "explain", id_col) < min(1.0, sample / max(total, 1))
            )
            assembled = VectorAssembler(
                inputCols=list(names), outputCol="__x", handleInvalid="keep"
            )
            train = assembled.transform(fit_on.fillna(0.0, subset=list(names))).persist()
            try:
                for s in largest[:top]:
                    _rule(s, train, joined, names, DecisionTreeClassifier, seed)
            finally:
                train.unpersist()
        return out
    finally:
        joined.unpersist()


def _rule(
    segment: dict[str, Any],
    train: DataFrame,
    everyone: DataFrame,
    names: Sequence[str],
    tree_class: Any,
    seed: int,
) -> None:
    """Fit the one-against-the-rest tree of ``segment`` and keep its best leaf as the rule."""
    from pyspark.sql import functions as F

    c = segment["cluster"]
    labelled = train.withColumn("__y", (F.col("cluster") == c).cast("double"))
    model = tree_class(featuresCol="__x", labelCol="__y", maxDepth=TREE_DEPTH, seed=seed).fit(
        labelled
    )
    leaves = [conds for conds, pred in leaf_rules(model.toDebugString, names) if pred == 1.0]
    if not leaves:
        segment.update(rule=None, conditions=[], precision=None, recall=None)
        return
    # the leaf that holds the most of the segment (in the training sample)
    held = labelled.where(F.col("__y") == 1.0)
    counts = held.select(
        *[_condition(simplify(conds)).alias(f"__l{i}") for i, conds in enumerate(leaves)]
    )
    totals = counts.agg(
        *[F.sum(F.col(f"__l{i}").cast("long")).alias(f"__l{i}") for i in range(len(leaves))]
    ).first()
    assert totals is not None
    best = max(range(len(leaves)), key=lambda i: (int(totals[f"__l{i}"] or 0), -i))
    conditions = simplify(leaves[best])
    hit = _condition(conditions)
    figures = everyone.agg(
        F.sum((hit & (F.col("cluster") == c)).cast("long")).alias("tp"),
        F.sum(hit.cast("long")).alias("predicted"),
    ).first()
    assert figures is not None
    tp, predicted = int(figures["tp"] or 0), int(figures["predicted"] or 0)
    segment.update(
        rule=describe(conditions),
        conditions=[list(x) for x in conditions],
        precision=tp / predicted if predicted else 0.0,
        recall=tp / segment["size"] if segment["size"] else 0.0,
    )
