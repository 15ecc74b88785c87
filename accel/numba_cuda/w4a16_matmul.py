"""The W4A16 matmul as a numba.cuda kernel (reference: llmref.ref.w4a16_matmul).

One thread per output y[m, n], output columns n along the fast thread axis (a decode step,
M = 1, still fills every warp), into a guarded buffer. Per group the thread dequantises the
16 possible weights of its column into a local table in the compute dtype and takes the
group's dot product with x[m]: the math of llmref.accel.kernels.w4a16_matmul, shared with
numba-cpu. It is the plain counterpart of the tuned CUDA C kernel (accel/cupy/w4a16_matmul.cu:
one warp per column, 32 codes per lane per load, shuffle reduction).
"""
import numpy as np
from numba import cuda, float32, float64

from llmref.accel._host import compute_dtype, widen
from llmref.accel.kernels import w4a16_matmul as kernels
from llmref.accel.numba_cuda._launch import Guarded, grid
from llmref.backends import simulated
from llmref.ref.w4a16_matmul import w4a16_matmul_args

TILE = (8, 4) if simulated() else (64, 2)  # (columns n, rows m) per block

_dequantize_group = cuda.jit(device=True)(kernels.dequantize_group)
_group_dot = cuda.jit(device=True)(kernels.group_dot)


def _make_kernel(dtype):
    @cuda.jit
    def w4a16(x, w_packed, scales, zeros, group_size, y):
        n, m = cuda.grid(2)
        if n >= w_packed.shape[0] or m >= x.shape[0]:
            return
        table = cuda.local.array(16, dtype)
        half = group_size // 2  # bytes per group
        acc = x[m, 0] - x[m, 0]  # 0 in the compute dtype (x is finite)
        for g in range(x.shape[1] // group_size):
            _dequantize_group(scales, zeros, n, g, table)
            acc += _group_dot(x, w_packed, table, m, n, g * half, (g + 1) * half)
        y[m, n] = acc

    return w4a16


_KERNELS = {np.dtype(np.float32): _make_kernel(float32), np.dtype(np.float64): _make_kernel(float64)}


def launch(x, w_packed, scales, zeros, group_size, y):
    """The kernel on device arrays: x (M, K) and scales (N, K/G) in y's dtype (float32 or
    float64), w_packed (N, K/2) and zeros (N, K/G) uint8, y (M, N) written."""
    (m, n) = y.shape
    blocks = (grid(n, TILE[0]), grid(m, TILE[1]))
    _KERNELS[np.dtype(y.dtype)][blocks, TILE](x, w_packed, scales, zeros, group_size, y)


def w4a16_matmul(x, w_packed, scales, zeros, group_size=128):
    x, w_packed, scales, zeros, group_size = w4a16_matmul_args(x, w_packed, scales, zeros, group_size)
    work = compute_dtype(x.dtype)  # float32, float64 for float64 activations
    y = Guarded((x.shape[0], w_packed.shape[0]), work, "numba-cuda w4a16_matmul")
    launch(cuda.to_device(widen(x)), cuda.to_device(np.ascontiguousarray(w_packed)),
           cuda.to_device(widen(scales.astype(x.dtype))), cuda.to_device(np.ascontiguousarray(zeros)),
           group_size, y.device)
    return y.result().astype(x.dtype)
