"""The W8A8 matmul as a numba.njit loop (reference: llmref.ref.w8a8_matmul); the argument
checks are the reference's (w8a8_matmul_args). numba-cpu is its only backend, so the loop
holds its math."""
import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.ref.w8a8_matmul import w8a8_matmul_args


@numba.njit(cache=True)
def _w8a8(x_q, w_q, x_scale, w_scale, acc, y):
    """acc[m, n] = sum_k x_q[m, k] w_q[n, k] in int32 (exact for K < 2^17), then
    y[m, n] = acc * x_scale[m] * w_scale[n]."""
    for m in range(x_q.shape[0]):
        for n in range(w_q.shape[0]):
            a = np.int32(0)
            for k in range(x_q.shape[1]):
                a += np.int32(x_q[m, k]) * np.int32(w_q[n, k])
            acc[m, n] = a
            y[m, n] = a * x_scale[m] * w_scale[n]


def w8a8_matmul(x_q, w_q, x_scale, w_scale):
    x_q, w_q, x_scale, w_scale = w8a8_matmul_args(x_q, w_q, x_scale, w_scale)
    acc = np.empty((x_q.shape[0], w_q.shape[0]), np.int32)
    y = np.empty(acc.shape, compute_dtype(x_scale.dtype))
    _w8a8(np.ascontiguousarray(x_q, np.int8), np.ascontiguousarray(w_q, np.int8),
          widen(x_scale), widen(w_scale), acc, y)
    return acc, y.astype(x_scale.dtype, copy=False)
