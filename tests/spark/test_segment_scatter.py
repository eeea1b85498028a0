"""The run report's scatter: 2-D always, a 3-D panel beside it from three dimensions on."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors

from spark_clustering.jobs.segment import _scatter_png

pytestmark = pytest.mark.spark


def _png_size(path: str) -> tuple[int, int]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize(("d", "width"), [(1, 700), (2, 700), (3, 1400), (5, 1400)])
def test_scatter_has_a_3d_panel_from_three_dimensions(spark, tmp_path, d, width):
    rng = np.random.default_rng(d)
    rows = [(Vectors.dense(rng.normal(size=d).tolist()), int(c))
            for c in rng.integers(-1, 3, size=60)]  # fmt: skip
    df = spark.createDataFrame(rows, ["reduced", "cluster"])
    path = _scatter_png(df, "reduced", 50, 60, 0, str(tmp_path / "scatter.png"))
    assert _png_size(path) == (width, 550)
