"""Datasets for the DBSCAN parity tests, and the comparison with scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import DBSCAN as SklearnDBSCAN
from sklearn.datasets import make_moons

EPS = 0.25
MIN_POINTS = 5


def _blobs_with_noise(rng: np.random.Generator, d: int, n: int) -> np.ndarray:
    """Blobs of very different densities plus uniform noise."""
    centers = rng.uniform(0, 12, size=(4, d))
    scales = [0.05, 0.12, 0.3, 0.6]
    counts = [n // 3, n // 4, n // 5, n // 6]
    parts = [rng.normal(c, s, size=(m, d)) for c, s, m in zip(centers, scales, counts, strict=True)]
    parts.append(rng.uniform(-1, 13, size=(n // 10, d)))
    return np.concatenate(parts)


def _lattice(d: int, side: int) -> np.ndarray:
    """Points exactly eps apart along each axis (eps is a power of two: exact in binary)."""
    axes = [np.arange(side) * EPS] * d
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)


def parity_dataset(d: int, seed: int = 7) -> np.ndarray:
    """Several hard cases side by side, 1000 units apart so they do not interact.

    Blobs of very different densities with uniform noise; moons (2-D); duplicated points; a
    lattice whose neighbours are exactly eps apart; a single tight cluster; pure noise.
    """
    rng = np.random.default_rng(seed + d)
    cases: list[np.ndarray] = [_blobs_with_noise(rng, d, 900 if d <= 3 else 600)]
    if d == 2:
        moons, _ = make_moons(400, noise=0.04, random_state=seed)
        cases.append(moons * 3.0)
    base = rng.uniform(0, 3, size=(40, d))
    cases.append(np.repeat(base, rng.integers(1, 8, size=40), axis=0))  # duplicates
    cases.append(_lattice(d, {1: 30, 2: 9, 3: 5}.get(d, 2)))
    cases.append(rng.normal(0, 0.02, size=(60, d)))  # one cluster
    cases.append(rng.uniform(0, 400, size=(80, d)))  # all noise at this eps
    shifted = []
    for i, case in enumerate(cases):
        offset = np.zeros(d)
        offset[0] = 1000.0 * i
        shifted.append(case + offset)
    return np.concatenate(shifted)


def sklearn_reference(x: np.ndarray, eps: float, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, core mask) from scikit-learn with its tree-based neighbour search."""
    ref = SklearnDBSCAN(eps=eps, min_samples=min_points, algorithm="kd_tree").fit(x)
    core = np.zeros(x.shape[0], dtype=bool)
    core[ref.core_sample_indices_] = True
    return ref.labels_, core


def assert_same_clustering(
    labels: np.ndarray, is_core: np.ndarray, ref_labels: np.ndarray, ref_core: np.ndarray
) -> None:
    """Core points, noise and the partition of core points equal (ids may be permuted)."""
    np.testing.assert_array_equal(is_core, ref_core, err_msg="core points differ")
    np.testing.assert_array_equal(labels == -1, ref_labels == -1, err_msg="noise differs")
    ours, theirs = labels[ref_core], ref_labels[ref_core]
    pairs = set(zip(ours.tolist(), theirs.tolist(), strict=True))
    assert len(pairs) == len(set(ours.tolist())) == len(set(theirs.tolist())), (
        "the partition of core points into clusters differs"
    )
    # a border point joins a cluster it is within eps of a core point of
    border = (labels >= 0) & ~ref_core
    assert np.all(ref_labels[border] >= 0)


def pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """The (a[i], b[i]) pairs, sorted: a set of pairs whose order is free, compared as a list."""
    return sorted(zip(a.tolist(), b.tolist(), strict=True))


def assert_same_region(ours: Any, cpu: Any) -> None:
    """Field for field the CPU kernel's result; the halo links as a set (their order is free)."""
    np.testing.assert_array_equal(ours.core_index, cpu.core_index, err_msg="core points")
    np.testing.assert_array_equal(ours.core_component, cpu.core_component, err_msg="components")
    a = pairs(ours.edge_halo_index, ours.edge_component)
    assert a == pairs(cpu.edge_halo_index, cpu.edge_component), "halo links differ"
    assert len(set(a)) == len(a), "a halo link is repeated"


def assert_same_border(ours: tuple, cpu: tuple) -> None:
    """A border pass's result ``(label, tie query, tie component)`` is the CPU one's: the same
    labels, the same ties as a set (their order is free)."""
    np.testing.assert_array_equal(ours[0], cpu[0], err_msg="border labels differ")
    assert pairs(ours[1], ours[2]) == pairs(cpu[1], cpu[2]), "border ties differ"


def one_pass(
    x: np.ndarray,
    n_regions: int,
    eps: float,
    min_points: int,
    seed: int = 0,
    kernel: Any = None,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """What the Spark fit does, region by region, in one process: the final cluster and core
    flag of every row, and the clusters' sizes (``kernel``: a region kernel, the CPU kernel by
    default). The unit tests and the GPU check (bench/gpu_check.py) both run it."""
    from spark_clustering.backends.cpu.dbscan_kernel import CPU_KERNEL
    from spark_clustering.backends.dbscan_regions import (
        fit_label_region,
        global_ids,
        merge_regions,
    )
    from spark_clustering.partitioning import build_regions

    kernel = CPU_KERNEL if kernel is None else kernel
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(x.shape[0], size=min(500, x.shape[0]), replace=False)]
    regions = build_regions(sample, n_regions, min_width=2 * eps)
    rows, region, home = regions.memberships(x, 2 * eps)
    home_region = regions.home(x)
    np.testing.assert_array_equal(home, home_region[rows] == region)
    labels = np.full(x.shape[0], -2, dtype=np.int64)
    is_core = np.zeros(x.shape[0], dtype=bool)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("cid", "cnt", "sm", "lk", "lc", "ti", "tc")
    }
    for r in range(regions.n_regions):
        sel = region == r
        idx = rows[sel]
        # the row key: a scrambled position, so that the smallest key of a group is no
        # particular point
        keys = (idx * 7919) % 1_000_003
        out = fit_label_region(
            kernel,
            x[idx],
            home_region[idx],
            keys,
            r,
            regions.lo[r],
            regions.hi[r],
            eps,
            min_points,
        )
        assert (labels[idx[out.home_index]] == -2).all()  # each row labelled once, at home
        labels[idx[out.home_index]] = global_ids(r, out.home_label)
        is_core[idx[out.home_index]] = out.home_core
        parts["cid"].append(global_ids(r, out.comp_id))
        parts["cnt"].append(out.comp_core_count)
        parts["sm"].append(out.comp_smallest)
        parts["lk"].append(out.link_key)
        parts["lc"].append(global_ids(r, out.link_comp))
        parts["ti"].append(global_ids(r, out.tie_id))
        parts["tc"].append(global_ids(r, out.tie_comp))
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    merged = merge_regions(
        cat["cid"],
        cat["cnt"],
        cat["sm"].reshape(-1, x.shape[1]),
        cat["lk"],
        cat["lc"],
        cat["ti"],
        cat["tc"],
    )
    assert (labels > -2).all()
    mapping = dict(zip(merged.label_id.tolist(), merged.cluster.tolist(), strict=True))
    final = np.array([mapping[v] if v >= 0 else -1 for v in labels.tolist()])
    return final, is_core, merged.sizes
