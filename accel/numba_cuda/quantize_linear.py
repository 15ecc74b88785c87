"""Linear quantization as numba.cuda kernels (reference: llmref.ref.quantize_linear).

Two launches: one thread per slice computes its scale, zero-point and ternary threshold,
then one thread per element writes its code and dequantized value into guarded buffers. The
math is llmref.accel.kernels.quantize_linear, shared with numba-cpu.
"""
import numpy as np
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import quantize_linear as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.backends import simulated
from llmref.ref.quantize_linear import SCHEMES, integer_range, quantize_linear_args

TILE = (8, 4) if simulated() else (8, 32)  # (slices, elements) per block

_slice_params = cuda.jit(device=True)(kernels.slice_params)
_element_code = cuda.jit(device=True)(kernels.element_code)


@cuda.jit
def _params_kernel(x, scheme, signed, bits, qmin, qmax, scale, zero, delta):
    r = cuda.grid(1)
    if r < x.shape[0]:
        _slice_params(x, r, scheme, signed, bits, qmin, qmax, scale, zero, delta)


@cuda.jit
def _codes_kernel(x, scheme, qmin, qmax, scale, zero, delta, q, x_hat):
    r, j = cuda.grid(2)
    if r < x.shape[0] and j < x.shape[1]:
        _element_code(x, r, j, scheme, qmin, qmax, scale, zero, delta, q, x_hat)


def quantize_linear(x, bits=8, scheme="symmetric", signed=True, granularity="tensor", axis=0,
                    group_size=0):
    x, bits, (slices, restore_codes, restore_scale) = quantize_linear_args(
        x, bits, scheme, signed, granularity, axis, group_size)
    slices = widen(slices)  # (S, n)
    rows, n = slices.shape
    qmin, qmax = integer_range(bits, scheme, signed)
    kind = SCHEMES.index(scheme)
    d_x = cuda.to_device(slices)
    scale = Guarded((rows,), slices.dtype, "numba-cuda quantize_linear scale")
    zero = Guarded((rows,), np.int32, "numba-cuda quantize_linear zero_point")
    d_delta = cuda.device_array(rows, np.float64)
    _params_kernel[grid(rows), THREADS](d_x, kind, bool(signed), bits, qmin, qmax,
                                        scale.device, zero.device, d_delta)
    q = Guarded((rows, n), np.int32, "numba-cuda quantize_linear q")
    x_hat = Guarded((rows, n), slices.dtype, "numba-cuda quantize_linear x_hat")
    blocks = (grid(rows, TILE[0]), grid(n, TILE[1]))
    _codes_kernel[blocks, TILE](d_x, kind, qmin, qmax, scale.device, zero.device, d_delta,
                                q.device, x_hat.device)
    return (restore_codes(q.result()), restore_scale(scale.result()).astype(x.dtype),
            restore_scale(zero.result()), restore_codes(x_hat.result()).astype(x.dtype))
