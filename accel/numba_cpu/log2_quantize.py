"""Power-of-two quantization as a numba.njit loop over slices (reference:
llmref.ref.log2_quantize), the slices spread across threads (prange;
llmref.accel.numba_cpu._threads). The argument checks and the slice layout are the
reference's (log2_quantize_args); the scale and codes are the shared math of
llmref.accel.kernels.log2_quantize.
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import log2_quantize as kernels
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.log2_quantize import log2_levels, log2_quantize_args

_slice_scale = numba.njit(cache=True)(kernels.slice_scale)
_element_code = numba.njit(cache=True)(kernels.element_code)


@threaded_loop()
def _log2_slices(x, levels, codes, scale, x_hat):
    """Slice by slice: its scale, then every element's code and x_hat."""
    for row in numba.prange(x.shape[0]):
        r = np.int64(row)  # uint64 in the parfor body: callees would compile twice
        scale[r] = _slice_scale(x, r)
        for j in range(x.shape[1]):
            _element_code(x, r, j, scale, levels, codes, x_hat)


def log2_quantize(x, bits=4, granularity="tensor", axis=0):
    x, bits, (slices, restore_codes, restore_scale) = log2_quantize_args(x, bits, granularity, axis)
    slices = widen(slices)  # (S, n) in the compute dtype
    codes = np.empty(slices.shape, np.int8)
    x_hat = np.empty_like(slices)
    scale = np.empty(slices.shape[0], slices.dtype)
    _log2_slices(slices.size, slices, log2_levels(bits), codes, scale, x_hat)
    return (restore_codes(codes), restore_scale(scale).astype(x.dtype),
            restore_codes(x_hat).astype(x.dtype, copy=False))
