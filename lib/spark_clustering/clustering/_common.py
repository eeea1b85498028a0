"""Pieces shared by the KMeans, GaussianMixture and PCA estimators (Spark or SageMaker backend).

- the ``backend`` choice (``spark`` or ``sagemaker``) and its check;
- the features check, reusing :mod:`spark_clustering.features.vectors`;
- persistence: Params through ``DefaultParamsWriter``, numpy arrays as Parquet under
  ``path/data/<name>`` through the DataFrame API, and a JSON ``extra`` dict in the metadata.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter

from ..base import check_choice
from ..features.vectors import as_array, feature_type, transform_rows

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

#: Accepted ``backend`` values; ``auto`` and ``cpu`` mean Spark (MLlib), as for the other
#: estimators of the package, so one contract test can drive them all.
SPARK_BACKEND_CHOICES = ("spark", "sagemaker", "auto", "cpu")


class HasSparkOrSageMakerBackend(Params):
    """Where the work runs: ``spark`` (MLlib, the default) or ``sagemaker``."""

    backend: Param[str] = Param(
        Params._dummy(),
        "backend",
        "where the work runs: 'spark' (Spark MLlib on this cluster, the default; 'auto' and "
        "'cpu' mean the same) or 'sagemaker' (SageMaker's built-in algorithm through "
        "sagemaker-pyspark, see setSageMakerConfig)",
        typeConverter=TypeConverters.toString,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(backend="spark")
        self._sagemaker_config: Any = None

    def getBackend(self) -> str:
        """Gets the value of backend or its default value."""
        return self.getOrDefault(self.backend)

    def resolvedBackend(self) -> str:
        """``spark`` or ``sagemaker``: the backend that will run (``auto``/``cpu`` -> spark)."""
        value = self.getBackend()
        check_choice("backend", value, SPARK_BACKEND_CHOICES)
        return "sagemaker" if value == "sagemaker" else "spark"

    def setSageMakerConfig(self, config: Any) -> Any:
        """Set the :class:`~spark_clustering.backends.sagemaker.config.SageMakerConfig` to use.

        Without one, ``backend='sagemaker'`` reads ``spark.clustering.sagemaker.*`` settings of
        the session (the job config). It is kept by ``copy()``.
        """
        self._sagemaker_config = config
        return self

    def _opt(self, param: Param) -> Any:
        """The Param's value, or None when it is neither set nor defaulted."""
        return self.getOrDefault(param) if self.isDefined(param) else None

    def getSageMakerConfig(self) -> Any:
        """The SageMaker configuration set on this stage, or None."""
        return getattr(self, "_sagemaker_config", None)


def check_features(df: DataFrame, col: str) -> None:
    """Raise ``ValueError`` naming ``featuresCol`` unless it is a vector or numeric array."""
    feature_type(df, col)


def vector_features(df: DataFrame, col: str) -> DataFrame:
    """``df`` with ``col`` as a Spark ML vector (arrays converted on the JVM, no Python UDF)."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import functions as F

    if isinstance(feature_type(df, col), VectorUDT):
        return df
    return df.withColumn(col, array_to_vector(F.col(col).cast("array<double>")))


def transform_with_mllib(
    dataset: DataFrame,
    col: str,
    dimension: int,
    handle_invalid: str,
    apply: Callable[[DataFrame, str], DataFrame],
    outputs: Sequence[str],
) -> DataFrame:
    """Run an MLlib model's transform (``apply(df, input_col)``) under ``handleInvalid``.

    MLlib fails with a Java trace on a null, non-finite or wrong-sized row; here such a row
    fails with a clear message ('error'), is dropped ('skip'), or goes through as a zero vector
    and gets null ``outputs`` ('keep'). The input is given to ``apply`` as a vector column.
    """
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    df, bad = transform_rows(dataset, col, dimension, handle_invalid)
    tmp, flag = "__mllib_in", "__mllib_invalid"
    if handle_invalid == "keep":
        zeros = F.array_repeat(F.lit(0.0), dimension)
        vec = array_to_vector(F.when(bad, zeros).otherwise(as_array(df, col)))
        data = df.withColumn(flag, bad).withColumn(tmp, vec)
        results = [F.when(~F.col(flag), F.col(o)).alias(o) for o in outputs]
    else:
        data = vector_features(df.withColumn(tmp, F.col(col)), tmp)
        results = [F.col(o) for o in outputs]
    kept = [F.col(f"`{c}`") for c in dataset.columns if c not in outputs]
    return apply(data, tmp).select(*kept, *results)


# --------------------------------------------------------------------------- persistence


class ArraysWriter(MLWriter):
    """Params as metadata, each numpy array as Parquet rows ``(i, values)`` under ``data/``."""

    def __init__(self, instance: Any) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        arrays: dict[str, np.ndarray] = self.instance._arrays()
        extra: dict[str, Any] = self.instance._extra()
        DefaultParamsWriter.saveMetadata(
            self.instance,
            path,
            self.sc,
            extraMetadata={"arrays": {k: list(v.shape) for k, v in arrays.items()}, **extra},
        )
        spark = self.sparkSession
        for name, arr in arrays.items():
            flat = np.asarray(arr, dtype=float).reshape(arr.shape[0] if arr.ndim else 1, -1)
            rows = [(i, [float(x) for x in row]) for i, row in enumerate(flat)]
            spark.createDataFrame(rows, "i int, values array<double>").coalesce(1).write.parquet(
                os.path.join(path, "data", name)
            )


class ArraysReader(MLReader):
    """Reads what :class:`ArraysWriter` wrote into a fresh instance of ``cls``."""

    def __init__(self, cls: type) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        metadata = DefaultParamsReader.loadMetadata(path, self.sc)
        instance = self.cls()
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        spark: SparkSession = self.sparkSession
        arrays = {}
        for name, shape in metadata.get("arrays", {}).items():
            rows = spark.read.parquet(os.path.join(path, "data", name)).orderBy("i").collect()
            arrays[name] = np.array([r["values"] for r in rows], dtype=float).reshape(shape)
        instance._load_state(arrays, metadata)
        return instance


class DelegateWriter(MLWriter):
    """Params and a JSON ``extra`` as metadata; the fitted MLlib model, if any, under ``mllib/``."""

    def __init__(self, instance: Any) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        mllib = self.instance._mllib
        DefaultParamsWriter.saveMetadata(
            self.instance,
            path,
            self.sc,
            extraMetadata={"hasMLlibModel": mllib is not None, **self.instance._extra()},
        )
        if mllib is not None:
            mllib.write().save(os.path.join(path, "mllib"))


class DelegateReader(MLReader):
    """Reads what :class:`DelegateWriter` wrote; ``mllib_cls`` loads the MLlib model."""

    def __init__(self, cls: type, mllib_cls: Any) -> None:
        super().__init__()
        self.cls = cls
        self.mllib_cls = mllib_cls

    def load(self, path: str) -> Any:
        metadata = DefaultParamsReader.loadMetadata(path, self.sc)
        instance = self.cls()
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        if metadata.get("hasMLlibModel"):
            instance._mllib = self.mllib_cls.load(os.path.join(path, "mllib"))
        instance._sagemaker = metadata.get("sagemaker")
        return instance
