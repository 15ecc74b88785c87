"""The W4A16 matmul as a numba.njit loop, parallel over output columns (reference:
llmref.ref.w4a16_matmul). The argument checks are the reference's (w4a16_matmul_args); the
dequantisation and each group's dot product are the shared math of
llmref.accel.kernels.w4a16_matmul.
"""
import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.kernels import w4a16_matmul as kernels
from llmref.ref.w4a16_matmul import w4a16_matmul_args

_dequantize_group = numba.njit(cache=True)(kernels.dequantize_group)
_group_dot = numba.njit(cache=True)(kernels.group_dot)


@numba.njit(cache=True, parallel=True)
def _w4a16(x, w_packed, scales, zeros, group_size, y):
    """Column n (in parallel): per group its 16 dequantised weights, reused by every row m."""
    m_rows, k_cols = x.shape
    half = group_size // 2  # bytes per group
    for n in numba.prange(w_packed.shape[0]):
        acc = np.zeros(m_rows, dtype=y.dtype)
        table = np.empty(16, dtype=y.dtype)
        for g in range(k_cols // group_size):
            _dequantize_group(scales, zeros, n, g, table)
            for m in range(m_rows):
                acc[m] += _group_dot(x, w_packed, table, m, n, g * half, (g + 1) * half)
        for m in range(m_rows):
            y[m, n] = acc[m]


def w4a16_matmul(x, w_packed, scales, zeros, group_size=128):
    x, w_packed, scales, zeros, group_size = w4a16_matmul_args(x, w_packed, scales, zeros, group_size)
    y = np.empty((x.shape[0], w_packed.shape[0]), compute_dtype(x.dtype))
    _w4a16(widen(x), np.ascontiguousarray(w_packed), widen(scales.astype(x.dtype)),
           np.ascontiguousarray(zeros), group_size, y)
    return y.astype(x.dtype)
