"""The pipelines behind ``spark_jobs/`` and the CLI."""
