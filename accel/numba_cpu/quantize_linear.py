"""Linear quantization as a numba.njit loop over slices (reference: llmref.ref.quantize_linear),
the slices spread across threads (prange; llmref.accel.numba_cpu._threads).

The argument checks and the slice layout are the reference's (quantize_linear_args), run
before any kernel; the scales, zero-points and codes are the shared math of
llmref.accel.kernels.quantize_linear.
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import quantize_linear as kernels
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.quantize_linear import SCHEMES, integer_range, quantize_linear_args

_slice_params = numba.njit(cache=True)(kernels.slice_params)
_element_code = numba.njit(cache=True)(kernels.element_code)


@threaded_loop()
def _quantize_slices(x, scheme, signed, bits, qmin, qmax, q, scale, zero, delta, x_hat):
    """Slice by slice: its parameters, then every element's code and x_hat."""
    for row in numba.prange(x.shape[0]):
        r = np.int64(row)  # uint64 in the parfor body: callees would compile twice
        _slice_params(x, r, scheme, signed, bits, qmin, qmax, scale, zero, delta)
        for j in range(x.shape[1]):
            _element_code(x, r, j, scheme, qmin, qmax, scale, zero, delta, q, x_hat)


def quantize_linear(x, bits=8, scheme="symmetric", signed=True, granularity="tensor", axis=0,
                    group_size=0):
    x, bits, (slices, restore_codes, restore_scale) = quantize_linear_args(
        x, bits, scheme, signed, granularity, axis, group_size)
    qmin, qmax = integer_range(bits, scheme, signed)
    slices = widen(slices)  # (S, n)
    q = np.empty(slices.shape, np.int32)
    x_hat = np.empty_like(slices)
    scale = np.empty(slices.shape[0], slices.dtype)
    zero = np.empty(slices.shape[0], np.int32)
    delta = np.empty(slices.shape[0], np.float64)
    _quantize_slices(slices.size, slices, SCHEMES.index(scheme), bool(signed), bits, qmin, qmax,
                     q, scale, zero, delta, x_hat)
    return (restore_codes(q), restore_scale(scale).astype(x.dtype), restore_scale(zero),
            restore_codes(x_hat).astype(x.dtype, copy=False))
