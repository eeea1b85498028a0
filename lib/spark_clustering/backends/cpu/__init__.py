"""CPU kernels (numba / scipy)."""
