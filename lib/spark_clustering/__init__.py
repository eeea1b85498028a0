"""spark-clustering: customer segmentation on Apache Spark.

The public names are imported lazily so that ``import spark_clustering`` works on a bare
driver: nothing here pulls in pyspark.ml, numba, cuML, boto3 or umap-learn until a name that
needs it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_EXPORTS: dict[str, str] = {
    "get_spark": ".session",
    "DBSCAN": ".clustering.dbscan",
    "DBSCANModel": ".clustering.dbscan",
    "KMeans": ".clustering.kmeans",
    "KMeansModel": ".clustering.kmeans",
    "GaussianMixture": ".clustering.gaussian_mixture",
    "GaussianMixtureModel": ".clustering.gaussian_mixture",
    "UMAP": ".reduction.umap",
    "UMAPModel": ".reduction.umap",
    "PCA": ".reduction.pca",
    "PCAModel": ".reduction.pca",
    "SageMakerConfig": ".backends.sagemaker.config",
    "tune_kmeans": ".backends.sagemaker.tuning",
    "flag_outliers": ".clustering.outliers",
    "cluster_distance_thresholds": ".clustering.outliers",
    "prepare_features": ".features.prepare",
    "apply_saved_preparation": ".features.prepare",
    "load_spec": ".features.spec",
    "generate_transactions": ".features.generate",
    "suggest_eps": ".neighbors",
    "k_distances": ".neighbors",
    "evaluate": ".metrics",
    "ClusteringMetricsEvaluator": ".metrics",
}
_SUBMODULES = {"tracking", "features", "metrics", "neighbors", "session"}

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name], __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'spark_clustering' has no attribute {name!r}")
