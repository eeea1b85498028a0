"""Experiment tracking (implemented in the tracking issue)."""
