"""The tracking seam in base.py: what estimators and evaluate() hand to the hooks."""

from __future__ import annotations

from typing import Any

from spark_clustering import base


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    def log_metrics(self, metrics: dict[str, Any], component: str) -> None:
        self.calls.append(("metrics", metrics, component))


def test_only_numeric_metrics_reach_the_hooks(monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(base, "_hooks", lambda: recorder)
    base.log_metrics(
        {"silhouette": 0.5, "n_clusters": 4, "silhouette_exact": True, "note": "x"},
        component="Evaluation",
    )
    assert recorder.calls == [("metrics", {"silhouette": 0.5, "n_clusters": 4}, "Evaluation")]


def test_no_hooks_means_no_call(monkeypatch):
    monkeypatch.setattr(base, "_hooks", lambda: None)
    base.log_metrics({"silhouette": 0.5})  # nothing to call, nothing raised
