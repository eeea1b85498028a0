"""Fixtures of the unit tests that talk to a tracking store."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A fresh MLflow SQLite store per test module, as the ``tracking`` keyword arguments."""
    root = tmp_path_factory.mktemp("mlflow")
    return {
        "backend": "mlflow",
        "tracking_uri": f"sqlite:///{root}/mlflow.db",
        "artifact_location": str(root / "artifacts"),
    }


@pytest.fixture(scope="module")
def client(store):
    """An ``MlflowClient`` on :func:`store`."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=store["tracking_uri"])
