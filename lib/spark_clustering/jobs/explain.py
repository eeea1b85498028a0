"""Explained segments: what sets each segment apart, in the business's own features.

For every segment (noise included, as its own row) computed in Spark over the original, unscaled
features (:func:`explain`):

* size and share of the customers;
* each feature's mean and median, and its **lift**: the standardised difference of the segment's
  mean from the population's, ``(mean_segment - mean_all) / std_all`` (population standard
  deviation; 0 for a constant feature);
* the features that set it apart most (largest ``|lift|``, at least :data:`MIN_LIFT`);
* a **rule**: the leaf of a shallow decision tree (one segment against the rest, depth
  :data:`TREE_DEPTH`) that holds the most of the segment's customers, as readable conditions on
  the features, with its precision and recall measured in Spark on every customer (one pass for
  all rules). The trees are scikit-learn's, fitted on the driver on a hashed sample of at most
  ``sample`` customers collected in id order (the same rows and trees on any layout): a depth-3
  tree on 50,000 rows takes milliseconds there, while Spark ML's distributed tree cost about ten
  Spark jobs per segment, which dominated this stage on every size of input;
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
from dataclasses import dataclass
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


def leaf_rules(tree: Any, names: Sequence[str]) -> list[tuple[list[tuple[str, str, float]], float]]:
    """Every leaf of a fitted scikit-learn ``DecisionTreeClassifier`` as ``(conditions,
    prediction)``, leaves in depth-first order (left first); a condition is ``(feature, "<=" |
    ">", threshold)`` (the tree sends ``x <= threshold`` left)."""
    t = tree.tree_
    classes = [float(c) for c in tree.classes_]
    leaves: list[tuple[list[tuple[str, str, float]], float]] = []
    stack: list[tuple[int, list[tuple[str, str, float]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        left, right = int(t.children_left[node]), int(t.children_right[node])
        if left == right:  # a leaf: both children are -1
            leaves.append((path, classes[int(t.value[node][0].argmax())]))
            continue
        name, threshold = names[int(t.feature[node])], float(t.threshold[node])
        stack.append((right, [*path, (name, ">", threshold)]))
        stack.append((left, [*path, (name, "<=", threshold)]))
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


@dataclass(frozen=True)
class Explained:
    """What :func:`explain` found: one profile per cluster, and each feature's ``(mean,
    population standard deviation)`` over all customers (what the lifts are measured against,
    and the scale :mod:`.identity` matches profiles on)."""

    profiles: list[dict[str, Any]]
    population: dict[str, tuple[float, float]]


def explain(
    assigned: DataFrame,
    source: DataFrame,
    names: Sequence[str],
    id_col: str,
    *,
    top: int = 12,
    sample: int = 50_000,
    seed: int = 0,
) -> Explained:
    """Per cluster (sorted by label): ``cluster``, ``size``, ``share``, ``mean``, ``median``,
    ``lift``, ``top_features``, ``name``, and for the ``top`` largest segments ``rule`` (text),
    ``conditions``, ``precision`` and ``recall``; and each feature's population mean and standard
    deviation. See the module docstring."""
    from pyspark.sql import functions as F

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
        if names and top > 0 and len(largest) >= 2:
            x, labels = _training_sample(joined, names, id_col, sample, total, seed)
            chosen = [(seg, _rule(seg["cluster"], x, labels, names, seed)) for seg in largest[:top]]
            _measure(chosen, joined)
        return Explained(out, population)
    finally:
        joined.unpersist()


def _training_sample(
    joined: DataFrame, names: Sequence[str], id_col: str, sample: int, total: int, seed: int
) -> tuple[Any, Any]:
    """The hashed sample the trees are fitted on, ordered by id: the same rows in the same order
    on any layout, so the same trees. Missing values count as 0, as in :func:`_condition`."""
    import numpy as np
    from pyspark.sql import functions as F

    from spark_clustering import sampling

    fraction = min(1.0, sample / max(total, 1))
    cols = [F.coalesce(F.col(f"`{n}`").cast("double"), F.lit(0.0)) for n in names]
    rows = (
        joined.where(sampling.uniform(seed, "explain", id_col) < fraction)
        .select(F.col(id_col), F.col("cluster").cast("int"), *cols)
        .orderBy(id_col)
        .collect()
    )
    x = np.array([r[2:] for r in rows], dtype=np.float64).reshape(len(rows), len(names))
    return x, np.array([r[1] for r in rows], dtype=np.int64)


def _rule(
    cluster: int, x: Any, labels: Any, names: Sequence[str], seed: int
) -> list[tuple[str, str, float]] | None:
    """The conditions of the best leaf of ``cluster``'s one-against-the-rest tree: of the leaves
    that predict the segment, the one holding most of its sampled customers (the first on a tie);
    None when no leaf predicts it."""
    import numpy as np
    from sklearn.tree import DecisionTreeClassifier

    y = labels == cluster
    if not y.any() or y.all():
        return None
    tree = DecisionTreeClassifier(max_depth=TREE_DEPTH, random_state=seed).fit(x, y)
    leaves = [conds for conds, pred in leaf_rules(tree, names) if pred == 1.0]
    if not leaves:
        return None
    held = x[y]
    column = {n: i for i, n in enumerate(names)}

    def holds(conditions: Sequence[tuple[str, str, float]]) -> int:
        hit = np.ones(len(held), dtype=bool)
        for name, op, t in conditions:
            v = held[:, column[name]]
            hit &= v > t if op == ">" else v <= t
        return int(hit.sum())

    rules = [simplify(conds) for conds in leaves]
    best = max(range(len(rules)), key=lambda i: (holds(rules[i]), -i))
    return rules[best]


def _measure(
    chosen: Sequence[tuple[dict[str, Any], list[tuple[str, str, float]] | None]],
    everyone: DataFrame,
) -> None:
    """Each rule's precision and recall over every customer, all rules in one Spark pass."""
    from pyspark.sql import functions as F

    aggs = []
    for i, (segment, conditions) in enumerate(chosen):
        if conditions is None:
            continue
        hit = _condition(conditions)
        aggs += [
            F.sum((hit & (F.col("cluster") == segment["cluster"])).cast("long")).alias(f"__tp{i}"),
            F.sum(hit.cast("long")).alias(f"__hit{i}"),
        ]
    figures = everyone.agg(*aggs).first() if aggs else None
    for i, (segment, conditions) in enumerate(chosen):
        if conditions is None or figures is None:
            segment.update(rule=None, conditions=[], precision=None, recall=None)
            continue
        tp, predicted = int(figures[f"__tp{i}"] or 0), int(figures[f"__hit{i}"] or 0)
        segment.update(
            rule=describe(conditions),
            conditions=[list(c) for c in conditions],
            precision=tp / predicted if predicted else 0.0,
            recall=tp / segment["size"] if segment["size"] else 0.0,
        )
