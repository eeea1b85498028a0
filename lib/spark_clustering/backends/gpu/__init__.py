"""GPU kernels (cuML / cupy), imported lazily on executors only."""
