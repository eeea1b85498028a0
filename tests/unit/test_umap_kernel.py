"""UMAP CPU kernels against umap-learn's and scikit-learn's own functions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from spark_clustering.backends.cpu import umap_kernel as K


def _gpu_knn_on_numpy(prepared, queries, k, metric):
    """The GPU backend's transform k-NN with numpy as its array module: the device code path,
    several query blocks."""
    from spark_clustering.backends.gpu import umap_kernel as G

    block = G._QUERY_BLOCK
    G._QUERY_BLOCK = 32
    try:
        return G.cupy_knn(prepared, queries, k, metric, xp=np)
    finally:
        G._QUERY_BLOCK = block


@pytest.mark.parametrize("knn", [K.exact_knn, _gpu_knn_on_numpy], ids=["cpu", "gpu-code-on-numpy"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_knn_equals_sklearn_brute_force(metric, knn):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(700, 6)) + 40.0  # an offset: the search centres the data
    queries = rng.normal(size=(90, 6)) + 40.0
    prepared = K.prepare_training(train, metric)
    idx, dist = knn(prepared, queries, 7, metric)
    ref_d, ref_i = (
        NearestNeighbors(n_neighbors=7, metric=metric, algorithm="brute")
        .fit(train)
        .kneighbors(queries)
    )
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-9, atol=1e-12)


def test_exact_knn_is_exact_where_the_index_prunes():
    # well separated blobs (lists are skipped), far outliers and points between the blobs
    # (bounds barely hold), a tiny blob smaller than k: every case the pruning must get right
    rng = np.random.default_rng(3)
    centres = rng.uniform(-50, 50, size=(6, 5))
    train = np.concatenate(
        [
            c + rng.normal(scale=s, size=(m, 5))
            for c, s, m in zip(
                centres, [1, 2, 3, 1, 2, 0.5], [900, 700, 500, 300, 200, 4], strict=True
            )
        ]
        + [rng.uniform(-80, 80, size=(60, 5))]
    )
    queries = np.concatenate(
        [
            centres[rng.integers(0, 6, 300)] + rng.normal(scale=2, size=(300, 5)),
            (centres[:-1] + centres[1:]) / 2,
            rng.uniform(-400, 400, size=(20, 5)),
            train[:10],  # distance 0 to a training row
        ]
    )
    prepared = K.prepare_training(train, "euclidean")
    assert len(prepared["centres"]) > 10  # many lists: the bounds are exercised
    idx, dist = K.exact_knn(prepared, queries, 15, "euclidean")
    ref_d, ref_i = (
        NearestNeighbors(n_neighbors=15, algorithm="brute").fit(train).kneighbors(queries)
    )
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-9, atol=1e-9)


def test_exact_knn_orders_ties_by_training_index_and_caps_k():
    train = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    prepared = K.prepare_training(train, "euclidean")
    idx, dist = K.exact_knn(prepared, np.array([[0.0, 0.0]]), 4, "euclidean")
    assert idx.tolist() == [[0, 2, 4, 1]]  # three at 0, then the lower index of two at 1
    np.testing.assert_allclose(dist, [[0.0, 0.0, 0.0, 1.0]])
    idx, _ = K.exact_knn(prepared, np.array([[5.0, 5.0]]), 9, "euclidean")
    assert sorted(idx[0].tolist()) == [0, 1, 2, 3, 4]  # k above the training rows: all of them


def test_sigmas_match_umap_learn_smooth_knn_dist():
    from umap.umap_ import smooth_knn_dist

    rng = np.random.default_rng(1)
    dists = np.sort(rng.gamma(2.0, 1.0, size=(200, 15)), axis=1)
    dists[:5, 0] = 0.0  # duplicates of a training point
    ours = K.smooth_knn_sigmas(dists, 15.0)
    ref, rho = smooth_knn_dist(dists.astype(np.float32), 15.0, local_connectivity=0.0)
    assert np.all(rho == 0)
    # umap-learn clamps with the batch mean, we with the row mean; neither clamp binds here
    np.testing.assert_allclose(ours, ref, rtol=2e-4)


def test_ab_params_match_umap_learn():
    from umap.umap_ import find_ab_params

    for min_dist in (0.0, 0.1, 0.5):
        np.testing.assert_allclose(
            K.find_ab_params(1.0, min_dist), find_ab_params(1.0, min_dist), rtol=1e-6
        )


def test_point_seeds_depend_on_seed_and_coordinates_only():
    x = np.arange(12.0).reshape(4, 3)
    a = K.point_seeds(x, 7)
    assert np.array_equal(a[1:], K.point_seeds(x[1:], 7))  # not on the batch
    assert len(set(a.tolist())) == 4
    assert not np.array_equal(a, K.point_seeds(x, 8))


def test_transform_places_duplicates_on_their_training_point():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(300, 4))
    emb = rng.normal(size=(300, 2))
    cached = K.cached_state(
        "unit-test", lambda: {"train": train, "embedding": emb, "a": 1.58, "b": 0.9}, "euclidean"
    )
    state = {**cached, "k": 10, "n_epochs": 30, "seed": 3, "metric": "euclidean"}
    out = K.transform_points(state, np.vstack([train[:20], rng.normal(size=(5, 4))]))
    np.testing.assert_array_equal(out[:20], emb[:20])
    assert np.isfinite(out).all()
    # new points start at the weighted mean of their neighbours and stay in the embedding's range
    assert (np.abs(out[20:]) < np.abs(emb).max() + 1.0).all()


def test_point_seeds_ignore_the_sign_of_zero():
    x = np.array([[-0.0, 1.0]])
    assert K.point_seeds(x, 1)[0] == K.point_seeds(np.array([[0.0, 1.0]]), 1)[0]


def test_gpu_knn_caps_k_at_the_sample_size_as_the_cpu_kernel_does():
    rng = np.random.default_rng(0)
    few = K.prepare_training(rng.normal(size=(5, 6)), "euclidean")
    queries = rng.normal(size=(90, 6))
    idx, _ = _gpu_knn_on_numpy(few, queries, 7, "euclidean")
    assert idx.shape == (90, 5) and all(sorted(r) == list(range(5)) for r in idx.tolist())
    np.testing.assert_array_equal(idx, K.exact_knn(few, queries, 7, "euclidean")[0])
