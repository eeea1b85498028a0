"""One contract over every estimator of the package: the Spark ML API and the shared input checks.

Each estimator (DBSCAN, KMeans, GaussianMixture, PCA, UMAP) is driven through the same steps:
``copy()``; every setter returns ``self``; ``fit(df, paramMap)`` with a non-default value changes
the result and leaves the estimator as it was; the output schema; estimator and model
persistence (the loaded model transforms identically); bad Params rejected with a
``ValueError`` naming the Param; and the input checks every estimator shares
(:func:`spark_clustering.features.vectors.check_input`): empty input, too few rows for the
Params, null/NaN/infinite rows under ``handleInvalid``, mixed dimensions, vectors or arrays,
rows of another dimension at transform.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from pyspark.ml.linalg import DenseVector, Vectors, VectorUDT
from pyspark.ml.param import TypeConverters
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StructField, StructType

from spark_clustering import (
    DBSCAN,
    PCA,
    UMAP,
    DBSCANModel,
    GaussianMixture,
    GaussianMixtureModel,
    KMeans,
    KMeansModel,
    PCAModel,
    UMAPModel,
)

pytestmark = pytest.mark.spark

N, D = 60, 3


@dataclass(frozen=True)
class Case:
    """How the contract drives one estimator."""

    make: Callable[[], Any]
    model_cls: type
    #: output columns and their Spark types (simpleString)
    outputs: dict[str, str]
    #: a Param and a non-default value that changes the fitted result
    override: tuple[str, Any]
    #: a Param and a value its checks reject
    bad: tuple[str, Any]
    #: rows too few for the Params (None: any number of rows is accepted) and the message
    too_few: tuple[int, str] | None
    #: what an empty input gives: a message, or None for a model that labels nothing
    empty: str | None
    #: the output a kept invalid row gets
    kept: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "DBSCAN": Case(
        make=lambda: DBSCAN(eps=1.0, minPoints=3, backend="cpu"),
        model_cls=DBSCANModel,
        outputs={"cluster": "int", "is_core": "boolean"},
        override=("eps", 0.05),
        bad=("eps", -1.0),
        too_few=None,  # DBSCAN's result is defined for any number of rows: noise
        empty=None,
        kept=-1,
    ),
    "KMeans": Case(
        make=lambda: KMeans(k=2, seed=1),
        model_cls=KMeansModel,
        outputs={"cluster": "int", "distance": "double"},
        override=("k", 3),
        bad=("k", 1),
        too_few=(2, "has 2 rows; k=3 needs at least 3"),
        empty="the DataFrame has no rows; k=2 needs at least 2",
        extra={"few_params": {"k": 3}},
    ),
    "GaussianMixture": Case(
        make=lambda: GaussianMixture(k=2, seed=1, maxIter=20),
        model_cls=GaussianMixtureModel,
        outputs={"cluster": "int", "probability": "vector"},
        override=("k", 3),
        bad=("tol", -1.0),
        too_few=(1, "has 1 rows; k=2 needs at least 2"),
        empty="the DataFrame has no rows; k=2 needs at least 2",
    ),
    "PCA": Case(
        make=lambda: PCA(k=1),
        model_cls=PCAModel,
        outputs={"projection": "vector"},
        override=("k", 2),
        bad=("k", 0),
        too_few=None,
        empty="the DataFrame has no rows; fitting needs at least 1",
    ),
    "UMAP": Case(
        make=lambda: UMAP(nNeighbors=5, nComponents=2, sampleSize=60, seed=3, backend="cpu"),
        model_cls=UMAPModel,
        outputs={"umap_features": "vector"},
        override=("nNeighbors", 10),
        bad=("minDist", 2.0),
        too_few=(5, "has 5 rows; nNeighbors=5 needs at least 6"),
        empty="the DataFrame has no rows; nNeighbors=5 needs at least 6",
    ),
}
NAMES = list(CASES)


def _points() -> np.ndarray:
    rng = np.random.default_rng(11)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 5.0, 5.0]])
    return np.vstack([c + rng.normal(0, 0.3, (N // 3, D)) for c in centres])


def _vector_df(spark, x, ids=None):
    ids = range(len(x)) if ids is None else ids
    rows = [(int(i), Vectors.dense([float(v) for v in r])) for i, r in zip(ids, x, strict=True)]
    schema = StructType([StructField("id", IntegerType()), StructField("features", VectorUDT())])
    return spark.createDataFrame(rows, schema)


def _array_df(spark, rows):
    schema = StructType(
        [StructField("id", IntegerType()), StructField("features", ArrayType(DoubleType()))]
    )
    return spark.createDataFrame([(int(i), r) for i, r in rows], schema)


def _result(model, df) -> list[tuple]:
    """The transform's output columns per id, vectors as rounded tuples (comparable)."""

    def plain(v: Any) -> Any:
        if isinstance(v, DenseVector) or hasattr(v, "toArray"):
            return tuple(np.round(v.toArray(), 9))
        return v

    case_outputs = [c for c in model.transform(df).columns if c not in df.columns]
    rows = model.transform(df).orderBy("id").select("id", *case_outputs).collect()
    return [tuple(plain(v) for v in r) for r in rows]


@pytest.fixture(scope="module")
def data(spark):
    x = _points()
    return x, _vector_df(spark, x).cache()


class _Fitted(dict):
    """Each estimator fitted once on the 60 rows, on first use (shared by the tests)."""

    def __init__(self, df) -> None:
        super().__init__()
        self.df = df

    def __missing__(self, name: str) -> Any:
        self[name] = CASES[name].make().fit(self.df)
        return self[name]


@pytest.fixture(scope="module")
def fitted(data):
    return _Fitted(data[1])


def _sample_value(est, param) -> Any:
    """A valid value to call a setter with: the Param's value, or one of its type."""
    if est.isDefined(param):
        return est.getOrDefault(param)
    samples = {
        TypeConverters.toInt: 1,
        TypeConverters.toFloat: 0.5,
        TypeConverters.toBoolean: True,
        TypeConverters.toString: "auto",
    }
    return samples.get(param.typeConverter, "auto")


def _check_setters(obj) -> int:
    """Call every ``setX`` of a copy with a valid value; each must return the object itself."""
    target = obj.copy()
    checked = 0
    for name, method in inspect.getmembers(target, predicate=inspect.ismethod):
        if not name.startswith("set") or name in ("set", "setParams", "setSageMakerConfig"):
            continue
        param_name = name[3].lower() + name[4:]
        if not target.hasParam(param_name):
            continue
        param = target.getParam(param_name)
        assert method(_sample_value(target, param)) is target, f"{type(obj).__name__}.{name}"
        checked += 1
    if hasattr(target, "setSageMakerConfig"):
        assert target.setSageMakerConfig(None) is target
    return checked


@pytest.mark.parametrize("name", NAMES)
def test_copy_and_setters(name, fitted):
    case = CASES[name]
    est = case.make()
    param, value = case.override
    copied = est.copy({est.getParam(param): value})
    assert copied is not est and copied.uid == est.uid
    assert copied.getOrDefault(param) == value and est.getOrDefault(param) != value
    plain = est.copy()
    assert {p.name: v for p, v in plain.extractParamMap().items()} == {
        p.name: v for p, v in est.extractParamMap().items()
    }
    assert est.setParams() is est
    assert _check_setters(est) >= 3
    model = fitted[name]
    assert _check_setters(model) >= 1
    renamed = model.copy()
    assert type(renamed) is type(model) and renamed.uid == model.uid


@pytest.mark.parametrize("name", NAMES)
def test_fit_with_param_map_changes_the_result(name, data, fitted):
    case = CASES[name]
    _, df = data
    est = case.make()
    param, value = case.override
    default_model = fitted[name]
    assert est.getOrDefault(param) != value  # a non-default value, or the test cannot fail
    model = est.fit(df, {est.getParam(param): value})
    assert model.getOrDefault(param) == value
    assert est.getOrDefault(param) == default_model.getOrDefault(param)  # left as it was
    assert _result(model, df) != _result(default_model, df)


@pytest.mark.parametrize("name", NAMES)
def test_output_schema(name, data, fitted):
    case = CASES[name]
    _, df = data
    out = fitted[name].transform(df)
    assert out.columns == [*df.columns, *case.outputs]
    types = {f.name: f.dataType for f in out.schema.fields}
    for col, kind in case.outputs.items():
        got = "vector" if isinstance(types[col], VectorUDT) else types[col].simpleString()
        assert got == kind, col
    assert out.count() == N


@pytest.mark.parametrize("name", NAMES)
def test_estimator_and_model_save_load(name, data, fitted, tmp_path):
    case = CASES[name]
    _, df = data
    param, value = case.override
    est = case.make()
    est = est.copy({est.getParam(param): value})
    est.write().overwrite().save(str(tmp_path / "est"))
    est.write().overwrite().save(str(tmp_path / "est"))  # overwrite works
    loaded_est = type(est).load(str(tmp_path / "est"))
    assert type(loaded_est) is type(est)
    assert {p.name: v for p, v in loaded_est.extractParamMap().items()} == {
        p.name: v for p, v in est.extractParamMap().items()
    }
    model = fitted[name]
    model.write().overwrite().save(str(tmp_path / "model"))
    model.write().overwrite().save(str(tmp_path / "model"))
    loaded = case.model_cls.load(str(tmp_path / "model"))
    assert type(loaded) is case.model_cls
    assert loaded.getOrDefault(param) == model.getOrDefault(param)
    assert _result(loaded, df) == _result(model, df)


@pytest.mark.parametrize("name", NAMES)
def test_bad_params_rejected_naming_the_param(name, data):
    case = CASES[name]
    _, df = data
    param, value = case.bad
    est = case.make()
    with pytest.raises(ValueError, match=f"{param}={value!r}"):
        est.fit(df, {est.getParam(param): value})
    with pytest.raises(ValueError, match="handleInvalid='drop'"):
        est.fit(df, {est.getParam("handleInvalid"): "drop"})
    with pytest.raises(ValueError, match="featuresCol='nope' is not a column"):
        est.fit(df, {est.getParam("featuresCol"): "nope"})
    with pytest.raises(ValueError, match="featuresCol='id' has type int"):
        est.fit(df, {est.getParam("featuresCol"): "id"})


@pytest.mark.parametrize("name", NAMES)
def test_empty_and_too_few_rows(name, spark, data):
    case = CASES[name]
    x, _ = data
    est = case.make()
    empty = _array_df(spark, [])
    if case.empty is None:
        model = est.fit(empty)
        assert model.transform(empty).count() == 0
    else:
        with pytest.raises(ValueError, match=f"featuresCol='features': {case.empty}"):
            est.fit(empty)
    if case.too_few is not None:
        rows, message = case.too_few
        few = _vector_df(spark, x[:rows])
        params = {est.getParam(k): v for k, v in case.extra.get("few_params", {}).items()}
        with pytest.raises(ValueError, match=message):
            est.fit(few, params)


def test_pca_k_larger_than_the_features_fails_before_the_decomposition(data, monkeypatch):
    import pyspark.ml.feature

    _, df = data

    def refuse(*args, **kwargs):
        raise AssertionError("MLlib's PCA must not be fitted")

    monkeypatch.setattr(pyspark.ml.feature.PCA, "fit", refuse)
    with pytest.raises(ValueError, match=r"k=5 is larger than the number of features .* \(3\)"):
        PCA(k=5).fit(df)


@pytest.mark.parametrize("name", NAMES)
def test_invalid_rows_follow_handle_invalid(name, spark, data, fitted):
    case = CASES[name]
    x, _ = data
    rows = [(i, [float(v) for v in r]) for i, r in enumerate(x)]
    rows += [(100, [float("nan"), 0.0, 0.0]), (101, [float("inf"), 1.0, 1.0]), (102, None)]
    bad = _array_df(spark, rows)
    est = case.make()
    with pytest.raises(ValueError, match=f"3 of {N + 3} rows with null, NaN or infinite"):
        est.fit(bad)
    # fitted on the valid rows only: the model of the same frame without them
    clean = _result(est.fit(bad.where("id < 100")), bad.where("id < 100"))
    for mode in ("skip", "keep"):
        model = est.fit(bad, {est.getParam("handleInvalid"): mode})
        assert _result(model, bad.where("id < 100")) == clean
    model = fitted[name]
    with pytest.raises(Exception, match="null, NaN or infinite"):
        model.transform(bad).collect()
    skipped = model.copy({model.getParam("handleInvalid"): "skip"}).transform(bad)
    assert sorted(r["id"] for r in skipped.collect()) == list(range(N))
    kept = model.copy({model.getParam("handleInvalid"): "keep"}).transform(bad)
    first = next(iter(case.outputs))
    by_id = {r["id"]: r[first] for r in kept.collect()}
    assert len(by_id) == N + 3
    assert all(by_id[i] == case.kept for i in (100, 101, 102))
    assert all(by_id[i] is not None for i in range(N))


@pytest.mark.parametrize("name", NAMES)
def test_mixed_dimensions_and_wrong_size_rows(name, spark, data, fitted):
    case = CASES[name]
    x, _ = data
    rows = [(i, [float(v) for v in r]) for i, r in enumerate(x)] + [(100, [1.0, 2.0])]
    mixed = _array_df(spark, rows)
    est = case.make()
    with pytest.raises(ValueError, match="featuresCol='features' holds rows of different dim"):
        est.fit(mixed)
    model = fitted[name]
    wrong = _array_df(spark, [(0, [float(v) for v in x[0]]), (1, [1.0, 2.0])])
    with pytest.raises(Exception, match="featuresCol='features'"):
        model.transform(wrong).collect()
    skipped = model.copy({model.getParam("handleInvalid"): "skip"}).transform(wrong)
    assert [r["id"] for r in skipped.collect()] == [0]
    kept = model.copy({model.getParam("handleInvalid"): "keep"}).transform(wrong)
    first = next(iter(case.outputs))
    assert {r["id"]: r[first] for r in kept.collect()}[1] == case.kept


@pytest.mark.parametrize("name", NAMES)
def test_vectors_and_arrays_give_the_same_result(name, spark, data, fitted):
    case = CASES[name]
    x, df = data
    arrays = _array_df(spark, [(i, [float(v) for v in r]) for i, r in enumerate(x)])
    from_arrays = case.make().fit(arrays)
    assert _result(from_arrays, df) == _result(fitted[name], df)
    assert _result(fitted[name], arrays) == _result(fitted[name], df)


def test_invalid_rows_detected_without_a_lambda(spark):
    from pyspark.sql import functions as F

    from spark_clustering.features.vectors import invalid_expr

    nan, inf = float("nan"), float("inf")
    rows = [
        ([1.0, 2.0], False),
        ([nan, 1.0], True),
        ([None, 1.0], True),
        ([inf, 1.0], True),
        ([-inf, 1.0], True),
        (None, True),
        ([], False),
        ([1.0, nan, None], True),
        ([inf, nan], True),
        ([-0.0, 5e307], False),
    ]
    df = spark.createDataFrame(rows, "a array<double>, want boolean")
    bad = df.select(invalid_expr(F.col("a")).alias("bad"), "want")
    assert all(r["bad"] is r["want"] for r in bad.collect())
    plan = bad._jdf.queryExecution().executedPlan().toString()
    assert "lambdafunction" not in plan  # compiled, not interpreted per element
