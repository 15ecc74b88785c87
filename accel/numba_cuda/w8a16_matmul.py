"""The W8A16 matmul as a numba.cuda kernel (reference: llmref.ref.w8a16_matmul): one thread
per output y[m, n], looping over K with the int8 code dequantized in a register, into a
guarded buffer. The dot product is llmref.accel.kernels.w8a16_matmul, shared with numba-cpu.
"""
import numpy as np
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import w8a16_matmul as kernels
from llmref.accel.numba_cuda._launch import Guarded, grid
from llmref.backends import simulated
from llmref.ref.w8a16_matmul import w8a16_matmul_args

TILE = 8 if simulated() else 16  # a TILE x TILE block of (m, n) threads

_output_dot = cuda.jit(device=True)(kernels.output_dot)


@cuda.jit
def _w8a16(x, w_q, scales, g, y):
    m, n = cuda.grid(2)
    if m < x.shape[0] and n < w_q.shape[0]:
        y[m, n] = _output_dot(x, w_q, scales, g, m, n)


def w8a16_matmul(x, w_q, scales, group_size=0):
    x, w_q, scales, g = w8a16_matmul_args(x, w_q, scales, group_size)
    xw = widen(x)  # (M, K) in float32 (float64 for float64 inputs)
    sw = np.ascontiguousarray(scales, dtype=xw.dtype)
    m, n = x.shape[0], w_q.shape[0]
    y = Guarded((m, n), xw.dtype, "numba-cuda w8a16_matmul")
    _w8a16[(grid(m, TILE), grid(n, TILE)), (TILE, TILE)](
        cuda.to_device(xw), cuda.to_device(np.ascontiguousarray(w_q)), cuda.to_device(sw), g, y.device)
    return y.result().astype(x.dtype)
