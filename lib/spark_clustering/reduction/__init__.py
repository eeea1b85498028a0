"""Dimension reduction estimators (UMAP, PCA)."""
