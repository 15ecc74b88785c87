"""Host-side plumbing shared by the accelerated backends.

Kernels see contiguous 2-D (rows, n) arrays in a compute dtype: float64 for float64 inputs,
float32 otherwise (float16 and bfloat16 inputs are widened exactly, accumulated in float32,
and the result is rounded once back to the input dtype).
"""
import functools
import math

import numpy as np

from llmref.dtypes import accumulation_dtype, is_float_dtype


def compute_dtype(dtype) -> np.dtype:
    """float64 for float64 inputs, float32 for float32, float16 and bfloat16 (every spec's
    accumulation convention, llmref.dtypes.accumulation_dtype)."""
    return _compute_dtype(np.dtype(dtype))


@functools.lru_cache(maxsize=None)
def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """compute_dtype, remembered per dtype: a model's per-token path asks thousands of times."""
    return np.dtype(accumulation_dtype(str(dtype)))


def rows_along(x: np.ndarray, axis: int):
    """(rows, n) contiguous view of x with `axis` last (a copy only where x is not already
    contiguous in its compute dtype: callers must not write into it), and a function undoing it."""
    moved = np.moveaxis(x, axis, -1)  # (..., n)
    shape = moved.shape
    flat = moved.reshape(math.prod(shape[:-1]), shape[-1])  # (rows, n); also when n == 0
    rows = np.ascontiguousarray(flat, dtype=compute_dtype(x.dtype))

    def restore(y2d, dtype=x.dtype):
        return np.moveaxis(y2d.reshape(shape), -1, axis).astype(dtype, copy=False)

    return rows, restore


def widen(x: np.ndarray) -> np.ndarray:
    """x contiguous in its compute dtype: x itself where it already is (callers must not write
    into it), else a copy."""
    return np.ascontiguousarray(x, dtype=compute_dtype(x.dtype))


def raw_bits(x: np.ndarray) -> np.ndarray:
    """Half-precision arrays as their uint16 bit patterns (CuPy has no bfloat16 dtype)."""
    assert is_float_dtype(x.dtype) and x.dtype.itemsize == 2
    return np.ascontiguousarray(x).view(np.uint16)
