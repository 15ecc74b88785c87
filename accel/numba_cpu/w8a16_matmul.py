"""The W8A16 matmul as a numba.njit loop over outputs (reference: llmref.ref.w8a16_matmul).
The argument checks are the reference's (w8a16_matmul_args); each output's dot product is the
shared math of llmref.accel.kernels.w8a16_matmul."""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import w8a16_matmul as kernels
from llmref.ref.w8a16_matmul import w8a16_matmul_args

_output_dot = numba.njit(cache=True)(kernels.output_dot)


@numba.njit(cache=True)
def _w8a16(x, w_q, scales, g, y):
    for m in range(x.shape[0]):
        for n in range(w_q.shape[0]):
            y[m, n] = _output_dot(x, w_q, scales, g, m, n)


def w8a16_matmul(x, w_q, scales, group_size=0):
    x, w_q, scales, g = w8a16_matmul_args(x, w_q, scales, group_size)
    xw = widen(x)  # (M, K) in float32 (float64 for float64 inputs)
    sw = np.ascontiguousarray(scales, dtype=xw.dtype)
    y = np.empty((x.shape[0], w_q.shape[0]), xw.dtype)
    _w8a16(xw, np.ascontiguousarray(w_q), sw, g, y)
    return y.astype(x.dtype)
