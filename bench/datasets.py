"""Benchmark datasets shared by bench/*.py.

``blobs_with_noise``: the DBSCAN benchmark data of the issue: 3-D Gaussian blobs whose densities
span a 27x range (standard deviations from ``s`` to ``3 s``: density ~ 1/sigma^3), plus 5% uniform
noise over the blobs' bounding box. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np


def blobs_with_noise(
    n: int,
    *,
    d: int = 3,
    n_blobs: int = 8,
    noise_fraction: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """Return an ``(n, d)`` float64 array: blobs of 27x density range plus uniform noise."""
    rng = np.random.default_rng(seed)
    n_noise = round(n * noise_fraction)
    n_blob = n - n_noise
    sigmas = np.linspace(1.0, 3.0, n_blobs)  # (3/1)^3 = 27x density range
    weights = rng.uniform(0.5, 1.5, n_blobs)
    counts = rng.multinomial(n_blob, weights / weights.sum())
    centers = rng.uniform(-60.0, 60.0, size=(n_blobs, d))
    parts = [
        rng.normal(loc=c, scale=s, size=(m, d))
        for c, s, m in zip(centers, sigmas, counts, strict=True)
    ]
    blobs = np.concatenate(parts) if parts else np.empty((0, d))
    lo, hi = blobs.min(axis=0) - 5.0, blobs.max(axis=0) + 5.0
    noise = rng.uniform(lo, hi, size=(n_noise, d))
    x = np.concatenate([blobs, noise])
    rng.shuffle(x)
    return x
