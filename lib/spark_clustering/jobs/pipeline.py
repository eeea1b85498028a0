"""The fitted segmentation pipeline shared by ``segment`` (which saves it) and ``score`` (which
reapplies it): preparation, reducer, clusterer, and the assignments table both jobs write.

Saved layout (``<output>/runs/run_date=YYYY-MM-DD/run-<run_id>/model/``)::

    pipeline.json      format version, run id, model version, columns, the stage classes
    preparation/       the prepare job's PipelineModel and preparation.json (raw input only)
    reducer/           UMAPModel or PCAModel (Spark ML persistence; absent for reducer none)
    clusterer/         DBSCANModel, KMeansModel or GaussianMixtureModel

Assignments (``.../run-<run_id>/assignments/`` for ``segment``, ``<output>/run_date=D/`` for
``score``): ``<id>, cluster, is_noise`` then ``is_core`` (DBSCAN), ``distance`` (KMeans) or
``probability`` (Gaussian mixture), ``run_id``, ``model_version``. ``segment`` publishes a run in
one atomic step (:mod:`spark_clustering.jobs.publish`); ``score`` writes its partition into a
hidden temporary sibling and renames it into place
(:func:`spark_clustering.jobs.io.atomic_output`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.ml import Model
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REDUCED_COL = "reduced"
PIPELINE_FILE = "pipeline.json"

#: config name -> (module, model class) of the saved stages
MODEL_CLASSES = {
    "pca": ("spark_clustering.reduction.pca", "PCAModel"),
    "umap": ("spark_clustering.reduction.umap", "UMAPModel"),
    "dbscan": ("spark_clustering.clustering.dbscan", "DBSCANModel"),
    "kmeans": ("spark_clustering.clustering.kmeans", "KMeansModel"),
    "gmm": ("spark_clustering.clustering.gaussian_mixture", "GaussianMixtureModel"),
}


@dataclass
class Stages:
    """Stage-by-stage progress: one log line per stage with its row count and elapsed time."""

    job: str
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    #: log level of the stage lines (the sweep logs its per-trial stages at DEBUG)
    level: int = logging.INFO

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Time the block; set ``info["rows"]`` inside it to log a row count."""
        info: dict[str, Any] = {}
        t0 = time.perf_counter()
        log.log(self.level, "%s: %s ...", self.job, name)
        yield info
        seconds = time.perf_counter() - t0
        self.timings[name] = round(seconds, 3)
        rows = info.get("rows")
        if rows is not None:
            self.rows[name] = int(rows)
        log.log(
            self.level,
            "%s: %s done%s in %.1f s (total %.1f s)",
            self.job,
            name,
            f", {rows} rows" if rows is not None else "",
            seconds,
            time.perf_counter() - self.started,
        )


def load_stage(algorithm: str, path: str) -> Model:
    """Load a saved reducer or clusterer model by its config name."""
    import importlib

    module, cls = MODEL_CLASSES[algorithm]
    return getattr(importlib.import_module(module), cls).load(path)


def assignments(model_out: DataFrame, id_col: str, clusterer: str, run_id: str, version: str):
    """The assignments columns from a clusterer's output (see the module docstring)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    cluster = F.col("cluster").cast("int")
    extra = {
        "dbscan": [F.col("is_core").cast("boolean").alias("is_core")],
        "kmeans": [F.col("distance").cast("double").alias("distance")],
        "gmm": [F.array_max(vector_to_array(F.col("probability"))).alias("probability")],
    }[clusterer]
    return model_out.select(
        F.col(id_col),
        cluster.alias("cluster"),
        (cluster == F.lit(-1)).alias("is_noise"),
        *extra,
        F.lit(run_id).alias("run_id"),
        F.lit(version).alias("model_version"),
    )


def select_features(features: DataFrame, names: Sequence[str] | None) -> DataFrame:
    """``features`` with its vector cut to the slots ``names`` (in that order); all when None.

    The names are those of the vector's ML attribute metadata (what
    :func:`spark_clustering.features.assemble.feature_names` reports); an unknown name raises
    ``ValueError`` listing the accepted ones.
    """
    if not names:
        return features
    from pyspark.ml.feature import VectorSlicer
    from pyspark.sql import functions as F

    from spark_clustering.features.assemble import feature_names

    available = feature_names(features)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(
            f"feature names {unknown} are not in the features vector; accepted: {available}"
        )
    sliced = VectorSlicer(inputCol="features", outputCol="__selected", names=list(names))
    others = [c for c in features.columns if c != "features"]
    return sliced.transform(features).select(*others, F.col("__selected").alias("features"))


def write_json(spark: SparkSession | None, obj: Any, dest_dir: str, name: str) -> None:
    """Write ``obj`` as ``<dest_dir>/<name>`` (local or Hadoop file system)."""
    from .io import put_local_dir

    with tempfile.TemporaryDirectory(prefix="sc-json-") as local:
        with open(os.path.join(local, name), "w") as fh:
            json.dump(obj, fh, indent=2, default=str)
        put_local_dir(spark, local, dest_dir)


def read_json(spark: SparkSession | None, path: str) -> dict[str, Any] | None:
    """The JSON object in the small file ``path`` (local or Hadoop); None when it does not exist."""
    from .io import read_bytes

    data = read_bytes(spark, path)
    return None if data is None else dict(json.loads(data.decode()))


def read_text(spark: SparkSession, path: str) -> str:
    """A small text file, local or on a Hadoop file system."""
    from spark_clustering.features.prepare import _read_text

    return _read_text(spark, path)


def resolve_model_dir(spark: SparkSession, path: str) -> str:
    """The saved pipeline directory ``path`` names: the directory itself; for a run date's
    folder (``<output>/runs/run_date=D``) the model of its published run; for a ``segment``
    output directory (local, S3, HDFS) the model of the newest published run date. Runs are
    found through their publication records (:mod:`spark_clustering.jobs.publish`), so an
    unpublished or half-written run is never picked; dates of the layout before run folders
    (``models/run_date=D``) are found too."""
    from .io import path_exists
    from .publish import current_run, listed_dates

    root = path.rstrip("/")
    if path_exists(spark, f"{root}/{PIPELINE_FILE}"):
        return root
    parent, _, name = root.rpartition("/")
    if name.startswith("run_date=") and parent.endswith("/runs"):
        run = current_run(spark, parent[: -len("/runs")], name.split("=", 1)[1])
        if run is not None and path_exists(spark, f"{run.model}/{PIPELINE_FILE}"):
            return run.model
    for date in reversed(listed_dates(spark, root)):  # newest run date first
        run = current_run(spark, root, date)
        if run is not None and path_exists(spark, f"{run.model}/{PIPELINE_FILE}"):
            return run.model
    raise ValueError(
        f"{path!r} is not a saved segmentation pipeline: no {PIPELINE_FILE} in it (expected "
        "a segment output directory, one of its runs/run_date=YYYY-MM-DD folders or a run's "
        "model/ directory) and no published run under it"
    )


def load_pipeline(spark: SparkSession, path: str) -> tuple[str, dict[str, Any]]:
    """``(directory, pipeline.json content)`` of the saved pipeline ``path`` names."""
    root = resolve_model_dir(spark, path)
    meta = json.loads(read_text(spark, f"{root}/{PIPELINE_FILE}"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{root}/{PIPELINE_FILE} has format_version={meta.get('format_version')!r}; "
            f"accepted: {FORMAT_VERSION}"
        )
    return root, meta


def apply_pipeline(
    spark: SparkSession, root: str, meta: dict[str, Any], features: DataFrame
) -> DataFrame:
    """Reducer and clusterer of a saved pipeline applied to ``<id>, features`` rows; clusters the
    fit folded into noise (``meta["noise_clusters"]``, :func:`fold_into_noise`) are noise here."""
    df = select_features(features, meta.get("select"))
    if meta["reducer"] != "none":
        df = load_stage(meta["reducer"], f"{root}/reducer").transform(df)
    out = load_stage(meta["clusterer"], f"{root}/clusterer").transform(df)
    return fold_into_noise(out, meta.get("noise_clusters") or ())


def fold_into_noise(clustered: DataFrame, clusters: Sequence[int]) -> DataFrame:
    """``clustered`` with the ``cluster`` labels ``clusters`` replaced by -1 (noise): DBSCAN's
    clusters smaller than the smallest segment worth having, in the automatic choice."""
    if not clusters:
        return clustered
    from pyspark.sql import functions as F

    col = F.col("cluster")
    folded = F.when(col.isin([int(c) for c in clusters]), F.lit(-1)).otherwise(col)
    return clustered.withColumn("cluster", folded.cast(clustered.schema["cluster"].dataType))
