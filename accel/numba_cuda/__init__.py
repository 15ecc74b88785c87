"""numba.cuda kernels (run under NUMBA_ENABLE_CUDASIM=1 without a GPU)."""
