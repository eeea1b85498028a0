"""UMAP on Spark: fit on a bounded sample, embed every row in parallel on the executors.

``fit`` draws ``sampleSize`` rows with Spark (the smallest keys hashed from the seed and each row's
content, in that order, so the same sample on any partitioning; every row when the data is
smaller), brings them to the driver (the only data that leaves the executors, refused
past ``maxSampleSize``) and fits umap-learn there (cuML UMAP with ``backend="gpu"``).
``transform`` broadcasts the fit sample and its embedding once per model and embeds each row
on the executors: every Python worker prepares the model once (a module-level cache keyed by
the model uid) and places each point from its exact nearest training points, as umap-learn's
``transform`` does (see :mod:`spark_clustering.backends.cpu.umap_kernel`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import (
    DefaultParamsReadable,
    DefaultParamsReader,
    DefaultParamsWritable,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)
from pyspark.sql import functions as F

from .. import sampling
from ..base import check_choice, check_range, load_backend, log_fit, resolve_backend
from ..features.vectors import (
    Requirement,
    as_array,
    check_input,
    coordinate_names,
    feature_type,
    with_coordinates,
)
from ..params import (
    HANDLE_INVALID_CHOICES,
    HasBackend,
    HasFeaturesCol,
    HasHandleInvalid,
    HasOutputCol,
    HasSampleSize,
    HasSeed,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["UMAP", "UMAPModel"]

METRICS = ("euclidean", "cosine")

#: rows (and bytes of features) gathered from Arrow batches into one kernel call of transform
_EMBED_ROWS = 65_536
_EMBED_BYTES = 64 << 20


class _UMAPParams(
    HasFeaturesCol, HasOutputCol, HasSeed, HasBackend, HasSampleSize, HasHandleInvalid
):
    nNeighbors: Param[int] = Param(
        Params._dummy(),
        "nNeighbors",
        "neighbours of the fuzzy graph (umap-learn's n_neighbors), >= 2",
        typeConverter=TypeConverters.toInt,
    )
    nComponents: Param[int] = Param(
        Params._dummy(),
        "nComponents",
        "dimensions of the embedding, >= 1",
        typeConverter=TypeConverters.toInt,
    )
    minDist: Param[float] = Param(
        Params._dummy(),
        "minDist",
        "minimum distance between embedded points, in [0, 1]",
        typeConverter=TypeConverters.toFloat,
    )
    metric: Param[str] = Param(
        Params._dummy(),
        "metric",
        f"input distance: one of {', '.join(METRICS)}",
        typeConverter=TypeConverters.toString,
    )
    maxSampleSize: Param[int] = Param(
        Params._dummy(),
        "maxSampleSize",
        "hard limit on sampleSize: rows brought to the driver to fit",
        typeConverter=TypeConverters.toInt,
    )
    transformEpochs: Param[int] = Param(
        Params._dummy(),
        "transformEpochs",
        "optimisation epochs per transformed point after the weighted-average start (0: none)",
        typeConverter=TypeConverters.toInt,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            featuresCol="features",
            outputCol="umap_features",
            nNeighbors=15,
            nComponents=3,
            minDist=0.1,
            metric="euclidean",
            seed=0,
            sampleSize=20_000,
            maxSampleSize=200_000,
            transformEpochs=30,
            backend="auto",
            handleInvalid="error",
        )

    def getNNeighbors(self) -> int:
        """Gets the value of nNeighbors or its default value."""
        return self.getOrDefault(self.nNeighbors)

    def getNComponents(self) -> int:
        """Gets the value of nComponents or its default value."""
        return self.getOrDefault(self.nComponents)

    def getMinDist(self) -> float:
        """Gets the value of minDist or its default value."""
        return self.getOrDefault(self.minDist)

    def getMetric(self) -> str:
        """Gets the value of metric or its default value."""
        return self.getOrDefault(self.metric)

    def getMaxSampleSize(self) -> int:
        """Gets the value of maxSampleSize or its default value."""
        return self.getOrDefault(self.maxSampleSize)

    def getTransformEpochs(self) -> int:
        """Gets the value of transformEpochs or its default value."""
        return self.getOrDefault(self.transformEpochs)

    def _validate_params(self) -> None:
        check_range("nNeighbors", self.getNNeighbors(), ge=2)
        check_range("nComponents", self.getNComponents(), ge=1)
        check_range("minDist", self.getMinDist(), ge=0.0, le=1.0)
        check_choice("metric", self.getMetric(), METRICS)
        check_range("sampleSize", self.getSampleSize(), ge=1)
        check_range("maxSampleSize", self.getMaxSampleSize(), ge=1)
        check_range("transformEpochs", self.getTransformEpochs(), ge=0)
        check_choice("handleInvalid", self.getHandleInvalid(), HANDLE_INVALID_CHOICES)
        if self.getSampleSize() <= self.getNNeighbors():
            raise ValueError(
                f"sampleSize={self.getSampleSize()} leaves too few rows to fit; accepted: "
                f"sampleSize > nNeighbors={self.getNNeighbors()}"
            )
        if self.getSampleSize() > self.getMaxSampleSize():
            raise ValueError(
                f"sampleSize={self.getSampleSize()} is past maxSampleSize="
                f"{self.getMaxSampleSize()}: the fit sample is collected to the driver; lower "
                "sampleSize or raise maxSampleSize if the driver has the memory"
            )


class UMAP(Estimator, _UMAPParams, DefaultParamsReadable, DefaultParamsWritable):
    """UMAP dimension reduction fitted on a Spark-drawn sample; transform runs on executors.

    Only the fit sample (``min(rows, sampleSize)`` rows, limited by ``maxSampleSize``) is
    brought to the driver. Dense and sparse vectors and numeric arrays are accepted (sparse
    vectors are densified batch by batch). For a fixed ``seed`` and backend the fit and the
    transform are deterministic, whatever the partitioning.

    Parameters
    ----------
    nNeighbors, nComponents, minDist, metric
        As umap-learn's ``n_neighbors`` (15), ``n_components`` (3), ``min_dist`` (0.1),
        ``metric`` ("euclidean" or "cosine").
    sampleSize : int
        Rows used to fit (default 20000).
    maxSampleSize : int
        Hard limit on ``sampleSize`` (default 200000); past it ``fit`` raises ``ValueError``.
    transformEpochs : int
        Optimisation epochs per new point in ``transform`` (30, umap-learn's transform count
        for large inputs; 0 keeps the weighted-average placement).
    backend : {"auto", "cpu", "gpu"}
        umap-learn on the CPU, cuML on a GPU.
    handleInvalid : {"error", "skip", "keep"}
        Rows with null/NaN/infinite features: fail, drop, or (transform only) output null.

    Examples
    --------
    >>> from spark_clustering import UMAP  # doctest: +SKIP
    >>> model = UMAP(nComponents=3, sampleSize=20000, seed=7).fit(df)  # doctest: +SKIP
    >>> model.transform(df).select("umap_features").first()  # doctest: +SKIP
    Row(umap_features=DenseVector([3.1, -0.4, 7.9]))
    """

    _input_kwargs: dict[str, Any]

    @keyword_only
    def __init__(
        self,
        *,
        featuresCol: str = "features",
        outputCol: str = "umap_features",
        nNeighbors: int = 15,
        nComponents: int = 3,
        minDist: float = 0.1,
        metric: str = "euclidean",
        seed: int = 0,
        sampleSize: int = 20_000,
        maxSampleSize: int = 200_000,
        transformEpochs: int = 30,
        backend: str = "auto",
        handleInvalid: str = "error",
    ) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        featuresCol: str = "features",
        outputCol: str = "umap_features",
        nNeighbors: int = 15,
        nComponents: int = 3,
        minDist: float = 0.1,
        metric: str = "euclidean",
        seed: int = 0,
        sampleSize: int = 20_000,
        maxSampleSize: int = 200_000,
        transformEpochs: int = 30,
        backend: str = "auto",
        handleInvalid: str = "error",
    ) -> UMAP:
        """Sets params for UMAP."""
        return self._set(**self._input_kwargs)

    def setFeaturesCol(self, value: str) -> UMAP:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setOutputCol(self, value: str) -> UMAP:
        """Sets the value of :py:attr:`outputCol`."""
        return self._set(outputCol=value)

    def setNNeighbors(self, value: int) -> UMAP:
        """Sets the value of :py:attr:`nNeighbors`."""
        return self._set(nNeighbors=value)

    def setNComponents(self, value: int) -> UMAP:
        """Sets the value of :py:attr:`nComponents`."""
        return self._set(nComponents=value)

    def setMinDist(self, value: float) -> UMAP:
        """Sets the value of :py:attr:`minDist`."""
        return self._set(minDist=value)

    def setMetric(self, value: str) -> UMAP:
        """Sets the value of :py:attr:`metric`."""
        return self._set(metric=value)

    def setSeed(self, value: int) -> UMAP:
        """Sets the value of :py:attr:`seed`."""
        return self._set(seed=value)

    def setSampleSize(self, value: int) -> UMAP:
        """Sets the value of :py:attr:`sampleSize`."""
        return self._set(sampleSize=value)

    def setMaxSampleSize(self, value: int) -> UMAP:
        """Sets the value of :py:attr:`maxSampleSize`."""
        return self._set(maxSampleSize=value)

    def setTransformEpochs(self, value: int) -> UMAP:
        """Sets the value of :py:attr:`transformEpochs`."""
        return self._set(transformEpochs=value)

    def setBackend(self, value: str) -> UMAP:
        """Sets the value of :py:attr:`backend`."""
        return self._set(backend=value)

    def setHandleInvalid(self, value: str) -> UMAP:
        """Sets the value of :py:attr:`handleInvalid`."""
        return self._set(handleInvalid=value)

    def _fit(self, dataset: DataFrame) -> UMAPModel:
        self._validate_params()
        col = self.getFeaturesCol()
        feature_type(dataset, col)
        spark = dataset.sparkSession
        backend = resolve_backend("umap", self.getBackend(), spark)
        kernel = load_backend("umap", backend)
        k = self.getNNeighbors()
        # 'keep' only means something at transform: the fit uses the valid rows, as 'skip'
        checked = check_input(
            dataset, col, self.getHandleInvalid(), Requirement(k + 1, "nNeighbors", k)
        )
        df, n = checked.data, checked.n_valid
        assert checked.dimension is not None
        d = checked.dimension
        coords = coordinate_names(d)
        flat = with_coordinates(df.select(col), col, d).select(*coords)
        # Rows ordered (and drawn) by a key hashed from the seed and their content, never by
        # rand() or partition order: umap-learn's embedding depends on the rows and their order,
        # which must be the same on any partitioning or cluster.
        key = sampling.uniform(self.getSeed(), "umap-fit", *map(sampling.single, coords))
        drawn = sampling.smallest(flat, key, self.getSampleSize(), coords, n)
        sample = drawn.to_numpy(dtype=np.float64)
        params = {p.name: v for p, v in self.extractParamMap().items()}
        result = kernel.fit(sample, params)
        model = UMAPModel._create(sample, result.embedding, result.a, result.b, backend)
        self._copyValues(model)
        log_fit(self)
        return model


class UMAPModel(Model, _UMAPParams, MLWritable, MLReadable):
    """A fitted UMAP: the fit sample, its embedding and the curve parameters ``a``, ``b``.

    Saved with Spark ML persistence: Params as metadata (``DefaultParamsWriter``) and the
    sample with its embedding as Parquet under ``path/data``; nothing is pickled.
    """

    _input_kwargs: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self._train = np.empty((0, 0))
        self._embedding = np.empty((0, 0))
        self._a = 1.0
        self._b = 1.0
        self._fit_backend = "cpu"
        self._broadcast: Any = None

    @classmethod
    def _create(
        cls, train: np.ndarray, embedding: np.ndarray, a: float, b: float, backend: str
    ) -> UMAPModel:
        model = cls()
        model._train = np.ascontiguousarray(train, dtype=np.float64)
        model._embedding = np.ascontiguousarray(embedding, dtype=np.float64)
        model._a, model._b = float(a), float(b)
        model._fit_backend = backend
        return model

    @property
    def embedding(self) -> np.ndarray:
        """Embedding of the fit sample, shape ``(sample rows, nComponents)``."""
        return self._embedding

    @property
    def trainingSample(self) -> np.ndarray:
        """The fit sample, shape ``(sample rows, features)``."""
        return self._train

    @property
    def numFeatures(self) -> int:
        """Dimension of the input features."""
        return int(self._train.shape[1])

    def setFeaturesCol(self, value: str) -> UMAPModel:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setOutputCol(self, value: str) -> UMAPModel:
        """Sets the value of :py:attr:`outputCol`."""
        return self._set(outputCol=value)

    def setTransformEpochs(self, value: int) -> UMAPModel:
        """Sets the value of :py:attr:`transformEpochs`."""
        return self._set(transformEpochs=value)

    def setHandleInvalid(self, value: str) -> UMAPModel:
        """Sets the value of :py:attr:`handleInvalid`."""
        return self._set(handleInvalid=value)

    def setBackend(self, value: str) -> UMAPModel:
        """Sets the value of :py:attr:`backend` (where transform's k-NN runs)."""
        return self._set(backend=value)

    def _state_broadcast(self, spark: SparkSession) -> tuple[Any, str]:
        """One broadcast of the model arrays per SparkContext, reused by every transform."""
        sc = spark.sparkContext
        if self._broadcast is None or self._broadcast[0] is not sc:
            state = {
                "train": self._train,
                "embedding": self._embedding,
                "a": self._a,
                "b": self._b,
            }
            self._broadcast = (sc, sc.broadcast(state), uuid.uuid4().hex)
        return self._broadcast[1], self._broadcast[2]

    def _transform(self, dataset: DataFrame) -> DataFrame:
        import pandas as pd
        from pyspark.sql.functions import pandas_udf
        from pyspark.sql.types import BooleanType, DoubleType, StructField, StructType

        check_range("transformEpochs", self.getTransformEpochs(), ge=0)
        check_choice("handleInvalid", self.getHandleInvalid(), HANDLE_INVALID_CHOICES)
        col, out = self.getFeaturesCol(), self.getOutputCol()
        feature_type(dataset, col)
        if out in dataset.columns:
            raise ValueError(f"outputCol={out!r} already exists in the DataFrame")
        backend = resolve_backend("umap", self.getBackend(), dataset.sparkSession)
        d, n_comp = self.numFeatures, int(self._embedding.shape[1])
        bc, token = self._state_broadcast(dataset.sparkSession)
        settings = {
            "key": f"{self.uid}:{token}",
            "backend": backend,
            "k": self.getNNeighbors(),
            "metric": self.getMetric(),
            "n_epochs": self.getTransformEpochs(),
            "seed": self.getSeed(),
        }
        names = [f"u{i}" for i in range(n_comp)]
        # the embedding, and whether the row's features were all finite (checked in Python,
        # where the values already are: a JVM higher-order function over every element cost
        # more than the rest of the expression)
        schema = StructType(
            [StructField(name, DoubleType()) for name in names]
            + [StructField("finite", BooleanType())]
        )

        # rows embedded per kernel call: Arrow batches (10000 rows by default) are gathered up
        # to this many, because the k-NN index groups a call's queries by their nearest list
        # and larger groups make larger BLAS products (50000 rows in one call search 1.4x
        # faster than in batches of 10000); at most ~64 MB of features are held
        rows_per_call = max(1, min(_EMBED_ROWS, _EMBED_BYTES // (8 * max(d, 1))))

        def embed(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            from spark_clustering._worker import prepare_worker

            prepare_worker()
            # only the kernel module is imported here (not this one, which pulls in pyspark.ml)
            from spark_clustering.backends.cpu.umap_kernel import cached_state, one_blas_thread
            from spark_clustering.base import load_backend as _load

            kernel = _load("umap", str(settings["backend"]))

            def load() -> dict[str, Any]:
                return dict(bc.value)

            # the cache holds the model's arrays only; per-call settings (epochs, seed) are
            # merged here, so a copy() with other settings shares the arrays, not the settings
            cached = cached_state(str(settings["key"]), load, str(settings["metric"]))
            state = {**cached, **settings}

            def run(frames: list[pd.DataFrame]) -> Iterator[pd.DataFrame]:
                x = np.concatenate([f.to_numpy(dtype=np.float64) for f in frames])
                result = np.full((len(x), n_comp), np.nan)
                ok = np.isfinite(x).all(axis=1)
                if ok.any():
                    with one_blas_thread():
                        result[ok] = kernel.transform(state, x[ok])
                start = 0
                for f in frames:  # one output batch per input batch, in order
                    stop = start + len(f)
                    out = pd.DataFrame(result[start:stop], columns=names)
                    out["finite"] = ok[start:stop]
                    yield out
                    start = stop

            pending: list[pd.DataFrame] = []
            held = 0
            for frame in batches:
                pending.append(frame)
                held += len(frame)
                if held >= rows_per_call:
                    yield from run(pending)
                    pending, held = [], 0
            if pending:
                yield from run(pending)

        # pandas is imported here, not at module level: give pandas_udf the real types
        embed.__annotations__ = {
            "batches": Iterator[pd.DataFrame],
            "return": Iterator[pd.DataFrame],
        }
        embed_udf = pandas_udf(embed, schema)  # type: ignore[call-overload]

        # few DataFrame steps: each one is analysed on the driver, and on a wide plan that cost
        # more than the embedding of a small batch
        mode = self.getHandleInvalid()
        arr = as_array(dataset, col)
        raw = embed_udf(F.struct(*[arr[i].alias(f"x{i}") for i in range(d)]))
        tmp = dataset.select("*", arr.alias("__umap_arr"), raw.alias("__umap_raw"))
        arr, raw = F.col("__umap_arr"), F.col("__umap_raw")
        if mode == "skip":
            tmp = tmp.where(arr.isNotNull() & (F.size(arr) == d) & raw["finite"])
        invalid = (
            F.raise_error(
                F.lit(
                    f"featuresCol={col!r} holds a row with null, NaN or infinite values; "
                    "set handleInvalid to 'skip' or 'keep'"
                )
            )
            if mode == "error"
            else F.lit(None)  # 'keep' (and rows 'skip' left out already): a null embedding
        )
        wrong_size = (
            F.raise_error(
                F.lit(
                    f"featuresCol={col!r} must have {d} features, as the data the model was fit "
                    "on; set handleInvalid to 'skip' or 'keep'"
                )
            )
            if mode == "error"
            else F.lit(None)  # the same handleInvalid rule as the other models' transform
        )
        embedded = (
            F.when(arr.isNull(), invalid)
            .when(F.size(arr) != d, wrong_size)
            .when(~raw["finite"], invalid)
            .otherwise(array_to_vector(F.array(*[raw[n] for n in names])))
        )
        return tmp.withColumn(out, embedded).drop("__umap_arr", "__umap_raw")

    # ----------------------------------------------------------------------- persistence

    def write(self) -> MLWriter:
        return _UMAPModelWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return _UMAPModelReader(cls)


class _UMAPModelWriter(MLWriter):
    def __init__(self, instance: UMAPModel) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        m = self.instance
        extra = {"a": m._a, "b": m._b, "fitBackend": m._fit_backend}
        DefaultParamsWriter.saveMetadata(m, path, self.sc, extraMetadata=extra)
        spark = self.sparkSession
        rows = [
            (i, x.tolist(), y.tolist())
            for i, (x, y) in enumerate(zip(m._train, m._embedding, strict=True))
        ]
        data = spark.createDataFrame(rows, "i int, features array<double>, embedding array<double>")
        data.write.parquet(f"{path}/data")


class _UMAPModelReader(MLReader):
    def __init__(self, cls: type[UMAPModel]) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> UMAPModel:
        metadata = DefaultParamsReader.loadMetadata(path, self.sc)
        data = self.sparkSession.read.parquet(f"{path}/data").orderBy("i")
        pdf = cast("pd.DataFrame", data.toPandas())
        train = np.array(pdf["features"].tolist(), dtype=np.float64)
        embedding = np.array(pdf["embedding"].tolist(), dtype=np.float64)
        model = UMAPModel._create(
            train, embedding, metadata["a"], metadata["b"], metadata["fitBackend"]
        )
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        return model
