"""Explained segments (jobs/explain.py): figures equal to pandas on the same rows, rules whose
precision and recall are what the conditions give, names from the features that set a segment
apart, the tree's leaves read back as conditions, the same rules on any layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_clustering.jobs.explain import (
    describe,
    explain,
    leaf_rules,
    lifts,
    names_for,
    simplify,
    top_features,
    word,
)

pytestmark = pytest.mark.spark

NAMES = ["recency_days", "frequency", "monetary", "share_grocery"]


@pytest.fixture(scope="module")
def customers():
    rng = np.random.default_rng(3)
    # 0: recent frequent big spenders; 1: lapsed infrequent; 2: grocery shoppers; -1: noise
    centres = {
        0: (10, 30, 900, 0.2),
        1: (300, 2, 40, 0.2),
        2: (60, 8, 120, 0.9),
        -1: (150, 10, 300, 0.5),
    }
    sizes = {0: 120, 1: 200, 2: 80, -1: 20}
    rows = []
    for c, m in sizes.items():
        spread = np.array(centres[c]) * 0.15
        x = np.array(centres[c]) + rng.normal(size=(m, 4)) * spread
        rows += [(len(rows) + i, c, *map(float, r)) for i, r in enumerate(x)]
    return pd.DataFrame(rows, columns=["customer_id", "cluster", *NAMES])


def test_figures_rules_and_names(spark, customers):
    df = spark.createDataFrame(customers)
    explained = explain(
        df.select("customer_id", "cluster"), df.drop("cluster"), NAMES, "customer_id"
    )
    by = {s["cluster"]: s for s in explained.profiles}
    assert sorted(by) == [-1, 0, 1, 2]
    mean, std = customers[NAMES].mean(), customers[NAMES].std(ddof=0)
    for n in NAMES:
        assert explained.population[n] == pytest.approx((mean[n], std[n]))
    for c, s in by.items():
        part = customers[customers.cluster == c]
        assert s["size"] == len(part) and s["share"] == pytest.approx(len(part) / len(customers))
        for n in NAMES:
            assert s["mean"][n] == pytest.approx(part[n].mean())
            assert s["lift"][n] == pytest.approx((part[n].mean() - mean[n]) / std[n])
    assert by[-1]["name"] == "noise" and "rule" not in by[-1]
    assert by[0]["top_features"][0] in ("frequency", "monetary", "recency_days")
    assert {"frequent", "high spend"} <= set(by[0]["name"].split(", "))
    assert "lapsed" in by[1]["name"] and by[2]["name"].startswith("grocery lovers")
    for c in (0, 1, 2):
        s = by[c]
        hit = pd.Series(True, index=customers.index)
        for n, op, t in s["conditions"]:
            hit &= customers[n] > t if op == ">" else customers[n] <= t
        tp = int((hit & (customers.cluster == c)).sum())
        assert s["precision"] == pytest.approx(tp / int(hit.sum()))
        assert s["recall"] == pytest.approx(tp / s["size"])
        assert s["precision"] > 0.9 and s["recall"] > 0.9, s  # well separated segments
        assert s["rule"] == describe([tuple(x) for x in s["conditions"]])


def test_leaf_rules_read_the_tree(customers):
    from sklearn.tree import DecisionTreeClassifier

    x = customers[NAMES].to_numpy()
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, customers.cluster == 2)
    leaves = leaf_rules(tree, NAMES)
    assert len(leaves) == tree.get_n_leaves()
    # each row falls in exactly one leaf, and that leaf predicts what the tree predicts
    predicted = tree.predict(x).astype(float)
    for i, (_, row) in enumerate(customers.iterrows()):
        hits = [p for conds, p in leaves
                if all(row[n] > t if op == ">" else row[n] <= t for n, op, t in conds)]  # fmt: skip
        assert len(hits) == 1 and hits[0] == predicted[i]


def test_rules_do_not_depend_on_the_layout(spark, customers):
    """The same rows in other partitions (and another order) give the same rules."""
    df = spark.createDataFrame(customers)
    one = explain(df.select("customer_id", "cluster"), df.drop("cluster"), NAMES, "customer_id")
    shuffled = spark.createDataFrame(customers.sample(frac=1.0, random_state=1)).repartition(7)
    other = explain(
        shuffled.select("customer_id", "cluster"), shuffled.drop("cluster"), NAMES, "customer_id"
    )
    assert [s.get("conditions") for s in one.profiles] == [
        s.get("conditions") for s in other.profiles
    ]


def test_pure_parts():
    assert simplify([("a", ">", 1.0), ("b", "<=", 5.0), ("a", ">", 2.0), ("a", "<=", 9.0)]) == [
        ("a", ">", 2.0),
        ("a", "<=", 9.0),
        ("b", "<=", 5.0),
    ]
    assert describe([]) == "all customers" and describe([("a", ">", 2.5)]) == "a > 2.5"
    assert lifts(
        {"a": 3.0, "b": None, "c": 1.0}, {"a": (1.0, 2.0), "b": (0.0, 1.0), "c": (1.0, 0.0)}
    ) == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert top_features({"a": 0.1, "b": -2.0, "c": 1.0, "d": 1.0}) == ["b", "c", "d"]
    assert word("recency_days", 1.2) == "lapsed" and word("weird", -1) == "low weird"
    same = {"top_features": ["frequency"], "lift": {"frequency": 1.0}}
    assert names_for(
        [
            {"cluster": 0, **same},
            {"cluster": 1, **same},
            {"cluster": 2, "top_features": [], "lift": {}},
        ]
    ) == {0: "frequent", 1: "frequent (2)", 2: "typical"}
