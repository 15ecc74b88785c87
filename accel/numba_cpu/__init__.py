"""numba.njit CPU kernels."""
