"""The W4A16 matmul as a numba.njit loop, parallel over output columns (reference:
llmref.ref.w4a16_matmul). The argument checks are the reference's (w4a16_matmul_args).

Why this loop is not llmref.accel.kernels.w4a16_matmul's (which numba-cuda runs): a CUDA
thread looks each nibble up in a 16-entry table of its group's weights, while on a CPU a
table lookup per nibble is a gather that stops LLVM from vectorising. Here each column n
first dequantises its whole packed row into two buffers in the compute dtype,

    lo[j] = (q[n, 2j] - z) * s,   hi[j] = (q[n, 2j + 1] - z) * s   (s, z of j's group),

each weight the exact (q - z) rounded once by the product with s, as the reference's; then
every row m of x takes one long dot product with them, y[m, n] = sum_j x[m, 2j] lo[j] +
x[m, 2j + 1] hi[j], summed in the compute dtype in whatever order vectorises. x arrives
split into its even and odd columns so both streams are contiguous. Codes are converted to
floats from int32 (int64 to float has no AVX2 instruction, which would keep the loop scalar).
"""
import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.ref.w4a16_matmul import w4a16_matmul_args

FAST = {"reassoc", "contract", "nsz"}  # reassociation for the sums; nothing assumes finiteness


@numba.njit(fastmath=FAST, inline="always")
def _dequantize_group(row, z, s, lo, hi):
    """lo[j], hi[j] = (low, high nibble of row[j] - z) * s for every byte of the group."""
    zf = lo.dtype.type(np.int32(z))
    for j in range(row.shape[0]):
        byte = row[j]
        lo[j] = (lo.dtype.type(np.int32(byte & 15)) - zf) * s
        hi[j] = (lo.dtype.type(np.int32(byte >> 4)) - zf) * s


@numba.njit(fastmath=FAST, inline="always")
def _dot_even_odd(x_even, x_odd, lo, hi):
    """sum_j x_even[j] lo[j] + x_odd[j] hi[j]."""
    acc = lo.dtype.type(0.0)
    for j in range(lo.shape[0]):
        acc += x_even[j] * lo[j] + x_odd[j] * hi[j]
    return acc


@numba.njit(cache=True, parallel=True, fastmath=FAST)
def _w4a16(x_even, x_odd, w_packed, scales, zeros, group_size, y):
    half = group_size // 2  # bytes per group
    for n in numba.prange(w_packed.shape[0]):
        lo = np.empty(w_packed.shape[1], dtype=y.dtype)  # (K/2,) weights of the even columns
        hi = np.empty(w_packed.shape[1], dtype=y.dtype)  # (K/2,) and of the odd ones
        for g in range(scales.shape[1]):
            part = slice(g * half, (g + 1) * half)
            _dequantize_group(w_packed[n, part], zeros[n, g], scales[n, g], lo[part], hi[part])
        for m in range(x_even.shape[0]):
            y[m, n] = _dot_even_odd(x_even[m], x_odd[m], lo, hi)


def w4a16_matmul(x, w_packed, scales, zeros, group_size=128):
    x, w_packed, scales, zeros, group_size = w4a16_matmul_args(x, w_packed, scales, zeros, group_size)
    wx = widen(x)  # (M, K)
    y = np.empty((x.shape[0], w_packed.shape[0]), compute_dtype(x.dtype))
    _w4a16(np.ascontiguousarray(wx[:, 0::2]), np.ascontiguousarray(wx[:, 1::2]),  # (M, K/2) each
           np.ascontiguousarray(w_packed), widen(scales.astype(x.dtype)), np.ascontiguousarray(zeros),
           group_size, y)
    return y.astype(x.dtype)
