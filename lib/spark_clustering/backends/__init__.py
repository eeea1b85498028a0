"""Backend implementations: numeric kernels (cpu), cuML calls (gpu), SageMaker jobs."""
