"""Clustering estimators and models (public API only; kernels live in ``backends``)."""
