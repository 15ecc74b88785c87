"""Argument checks shared by the reference and the accelerated backends.

Every check raises `InputError` whose message starts with the argument's name, so a caller
knows which argument to fix without reading a traceback.
"""
import numpy as np

from llmref.dtypes import is_float_dtype
from llmref.errors import InputError


def float_array(name, x, *, ndim=None, min_ndim=None, allow_nan=False, allow_inf=False,
                allow_neg_inf=False):
    """Return `x` as a float ndarray after checking rank and special values.

    Python lists and scalars are accepted and become float64; integer arrays are rejected,
    because silently promoting token ids or indices to floats hides caller bugs.
    """
    if isinstance(x, np.ndarray) and not is_float_dtype(x.dtype):
        raise InputError(f"{name}: expected a floating-point array, got dtype {x.dtype}")
    if isinstance(x, (str, bytes)):
        raise InputError(f"{name}: expected numbers, got {type(x).__name__}")
    arr = np.asarray(x)
    if not is_float_dtype(arr.dtype):
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{name}: expected numbers, got {type(x).__name__}") from None
    _check_rank(name, arr, ndim, min_ndim)
    if allow_nan and allow_inf:
        return arr  # every value is allowed: nothing to read
    if arr.dtype.kind != "f" and arr.dtype.itemsize == 2 and arr.size and _bfloat16_finite(arr):
        return arr  # bfloat16 judged by its bits, not through a float64 copy 4x its size
    wide = arr if arr.dtype.kind == "f" else arr.astype(np.float64)  # bfloat16 widened
    with np.errstate(over="ignore", invalid="ignore"):  # inf + -inf, or an overflow: looked at below
        total = wide.sum(dtype=np.float64 if wide.itemsize > 4 else np.float32) if wide.size else 0.0
    if np.isfinite(total):
        return arr  # the common case in one vectorised pass: any NaN or inf makes the sum non-finite
    if not allow_nan and np.isnan(wide).any():
        raise InputError(f"{name}: contains NaN, which this operation does not define")
    if not allow_inf:
        if allow_neg_inf:
            if np.isposinf(wide).any():
                raise InputError(f"{name}: contains +inf, which this operation does not define")
        elif np.isinf(wide).any():
            raise InputError(f"{name}: contains inf, which this operation does not define")
    return arr


def _bfloat16_finite(arr, chunk=1 << 16) -> bool:
    """No NaN or inf in bfloat16 arr: no |bits| (sign cleared) at or above the all-ones
    exponent 0x7F80, judged a cache-sized chunk at a time (29x the float64 route on 2^27
    values)."""
    bits = arr.reshape(-1).view(np.uint16)  # a copy only where arr is not contiguous
    return all(np.bitwise_and(bits[i:i + chunk], 0x7FFF).max() < 0x7F80
               for i in range(0, bits.size, chunk))


def int_array(name, x, *, ndim=None, min_ndim=None, low=None, high=None):
    """Return `x` as an integer ndarray, every value in [low, high) when bounds are given."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise InputError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    _check_rank(name, arr, ndim, min_ndim)
    if arr.size and low is not None and arr.min() < low:
        raise InputError(f"{name}: value {arr.min()} is below the allowed minimum {low}")
    if arr.size and high is not None and arr.max() >= high:
        raise InputError(f"{name}: value {arr.max()} is out of range (must be < {high})")
    return arr


def _check_rank(name, arr, ndim, min_ndim):
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    if min_ndim is not None and arr.ndim < min_ndim:
        raise InputError(f"{name}: expected at least {min_ndim} dimensions, got shape {arr.shape}")


def axis_index(name, axis, ndim) -> int:
    """Normalise a possibly negative axis; reject one outside [-ndim, ndim)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise InputError(f"{name}: expected an integer axis, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise InputError(f"{name}: axis {axis} is out of range for an array of {ndim} dimensions")
    return int(axis) % ndim


def same_size(name, size, expected, what):
    """Require one dimension to equal another, naming both."""
    if size != expected:
        raise InputError(f"{name}: has size {size} but {what} is {expected}")


def integer(name, value, *, low=None, high=None) -> int:
    """Require a Python or NumPy integer (not a bool) in [low, high] when bounds are given."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name}: expected an integer, got {value!r}")
    if low is not None and value < low:
        raise InputError(f"{name}: must be >= {low}, got {value}")
    if high is not None and value > high:
        raise InputError(f"{name}: must be <= {high}, got {value}")
    return int(value)


def flag(name, value) -> bool:
    """Require a bool (NumPy's included); 0, 1 and strings are not flags."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def positive(name, value, *, allow_zero=False):
    """Require a finite number > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name}: expected a number, got {value!r}")
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name}: must be finite and {bound}, got {value!r}")
    return value
