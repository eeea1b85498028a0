"""Small features tables and ``segment`` configs shared by the segment and score job tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CENTRES = np.array([[0.0, 0.0, 0.0, 0.0], [6.0, 6.0, 0.0, 0.0], [0.0, 6.0, 6.0, 6.0]])
NAMES = ["recency", "frequency", "monetary", "tenure"]


def blobs(n_per: int, seed: int, start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, x, truth)``: three well separated 4-D blobs, ``n_per`` points each."""
    rng = np.random.default_rng(seed)
    x = np.vstack([c + rng.normal(scale=0.5, size=(n_per, 4)) for c in CENTRES])
    truth = np.repeat(np.arange(len(CENTRES)), n_per)
    ids = np.arange(start, start + len(x))
    return ids, x, truth


def write_features(spark: Any, path: Path, ids: np.ndarray, x: np.ndarray) -> str:
    """A features Parquet as the prepare job writes it: ``customer_id, features`` (named slots)."""
    from pyspark.ml.feature import VectorAssembler

    rows = [(int(i), *map(float, r)) for i, r in zip(ids, x, strict=True)]
    df = spark.createDataFrame(rows, ["customer_id", *NAMES])
    assembled = VectorAssembler(inputCols=NAMES, outputCol="features").transform(df)
    assembled.select("customer_id", "features").coalesce(2).write.parquet(str(path))
    return str(path)


def write_config(path: Path, features: str, output: str, **tables: str) -> str:
    """A small ``segment`` config: PCA to 2-D, DBSCAN with auto eps, unless ``tables`` replace
    a table (``clusterer='algorithm = "kmeans"\\nparams = { k = 3 }'``)."""
    body = {
        "input": f'path = "{features}"\nkind = "features"',
        "reducer": 'algorithm = "pca"\nparams = { k = 2 }',
        "clusterer": 'algorithm = "dbscan"\nparams = { eps = "auto", minPoints = 5 }',
        "evaluation": "sample_size = 200\nrepeats = 1",
        "tracking": 'backend = "none"',
        "output": f'path = "{output}"\nscatter_sample = 200',
    }
    body.update(tables)
    path.write_text("\n".join(f"[{name}]\n{text}\n" for name, text in body.items()))
    return str(path)
