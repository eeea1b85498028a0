"""Assembly into the ``features`` vector column, with the feature names in its ML metadata.

``VectorAssembler`` builds the vector (each row dense or sparse, whichever is smaller) and names
its slots; a ``VectorSlicer`` keeps the selected slots. Spark's scalers drop slot names, so the
last stage, :class:`FeatureNames`, puts them back as ML attribute metadata and keeps only the id
and ``features`` columns. One-hot levels are named ``<column>=<level>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from .clean import OHE_SUFFIX

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.ml.feature import VectorAssembler, VectorSlicer
    from pyspark.sql import DataFrame


def attribute_metadata(names: Sequence[str]) -> dict[str, Any]:
    """ML attribute metadata for a vector column whose slots are all numeric and named."""
    attrs = [{"idx": i, "name": str(n)} for i, n in enumerate(names)]
    return {"ml_attr": {"attrs": {"numeric": attrs}, "num_attrs": len(attrs)}}


def feature_names(df: DataFrame, col: str = "features") -> list[str]:
    """The slot names in a vector column's ML attribute metadata (``ValueError`` if none)."""
    meta = df.schema[col].metadata.get("ml_attr", {})
    attrs = [a for group in meta.get("attrs", {}).values() for a in group]
    if not attrs:
        raise ValueError(f"column {col!r} has no feature names in its ML attribute metadata")
    return [str(a.get("name", f"f{a['idx']}")) for a in sorted(attrs, key=lambda a: a["idx"])]


def display_names(assembled: Sequence[str], categorical: Sequence[str]) -> list[str]:
    """``country__ohe_US`` (VectorAssembler's name for a one-hot level) -> ``country=US``."""
    out = []
    for name in assembled:
        for col in categorical:
            prefix = col + OHE_SUFFIX + "_"
            if name.startswith(prefix):
                name = f"{col}={name[len(prefix) :]}"
                break
        out.append(name)
    return out


def assembler_stage(inputs: Sequence[str], output_col: str) -> VectorAssembler:
    """``VectorAssembler`` failing on NaN or null (cleaning has already filled them)."""
    from pyspark.ml.feature import VectorAssembler

    return VectorAssembler(inputCols=list(inputs), outputCol=output_col, handleInvalid="error")


def slicer_stage(indices: Sequence[int], input_col: str, output_col: str) -> VectorSlicer:
    from pyspark.ml.feature import VectorSlicer

    return VectorSlicer(inputCol=input_col, outputCol=output_col, indices=[int(i) for i in indices])


class FeatureNames(
    Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable
):
    """Select the id and the vector column, naming the vector's slots in its ML metadata.

    Examples
    --------
    >>> names = FeatureNames(inputCol="scaled", outputCol="features", idCol="customer_id",
    ...                      featureNames=["recency_days", "frequency"])  # doctest: +SKIP
    >>> names.transform(df).columns  # doctest: +SKIP
    ['customer_id', 'features']
    """

    idCol: Param[str] = Param(
        Params._dummy(), "idCol", "id column kept next to the features",
        typeConverter=TypeConverters.toString,
    )  # fmt: skip
    _input_kwargs: dict[str, Any]
    featureNames: Param[list[str]] = Param(
        Params._dummy(), "featureNames", "name of each slot of the vector",
        typeConverter=TypeConverters.toListString,
    )  # fmt: skip

    @keyword_only
    def __init__(
        self,
        *,
        inputCol: str | None = None,
        outputCol: str = "features",
        idCol: str = "id",
        featureNames: list[str] | None = None,
    ) -> None:
        super().__init__()
        self._setDefault(outputCol="features", idCol="id", featureNames=[])
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        inputCol: str | None = None,
        outputCol: str = "features",
        idCol: str = "id",
        featureNames: list[str] | None = None,
    ) -> FeatureNames:
        return self._set(**self._input_kwargs)

    def getIdCol(self) -> str:
        return self.getOrDefault(self.idCol)

    def getFeatureNames(self) -> list[str]:
        return list(self.getOrDefault(self.featureNames))  # type: ignore[arg-type]

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        names = self.getFeatureNames()
        meta = attribute_metadata(names)
        vec = F.col(self.getInputCol()).alias(self.getOutputCol(), metadata=meta)
        return dataset.select(F.col(self.getIdCol()), vec)
