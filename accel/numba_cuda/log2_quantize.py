"""Power-of-two quantization as numba.cuda kernels (reference: llmref.ref.log2_quantize).

Two launches: one thread per slice finds its scale, then one thread per element writes its
code and dequantized value into guarded buffers. The math is
llmref.accel.kernels.log2_quantize, shared with numba-cpu.
"""
import numpy as np
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import log2_quantize as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.backends import simulated
from llmref.ref.log2_quantize import log2_levels, log2_quantize_args

TILE = 8 if simulated() else 16  # a TILE x TILE block of (slice, element) threads

_slice_scale = cuda.jit(device=True)(kernels.slice_scale)
_element_code = cuda.jit(device=True)(kernels.element_code)


@cuda.jit
def _scale_kernel(x, scale):
    r = cuda.grid(1)
    if r < x.shape[0]:
        scale[r] = _slice_scale(x, r)


@cuda.jit
def _codes_kernel(x, scale, levels, codes, x_hat):
    r, j = cuda.grid(2)
    if r < x.shape[0] and j < x.shape[1]:
        _element_code(x, r, j, scale, levels, codes, x_hat)


def log2_quantize(x, bits=4, granularity="tensor", axis=0):
    x, bits, (slices, restore_codes, restore_scale) = log2_quantize_args(x, bits, granularity, axis)
    slices = widen(slices)  # (S, n) in the compute dtype
    rows, n = slices.shape
    d_x = cuda.to_device(slices)
    scale = Guarded((rows,), slices.dtype, "numba-cuda log2_quantize scale")
    _scale_kernel[grid(rows), THREADS](d_x, scale.device)
    codes = Guarded((rows, n), np.int8, "numba-cuda log2_quantize codes")
    x_hat = Guarded((rows, n), slices.dtype, "numba-cuda log2_quantize x_hat")
    blocks = (grid(rows, TILE), grid(n, TILE))
    _codes_kernel[blocks, (TILE, TILE)](d_x, scale.device, log2_levels(bits), codes.device, x_hat.device)
    return (restore_codes(codes.result()), restore_scale(scale.result()).astype(x.dtype),
            restore_codes(x_hat.result()).astype(x.dtype))
