"""Softmax and log-softmax along one axis (specs/softmax.yaml, specs/log_softmax.yaml).

The reference computes in the precision of its input (the goldens feed it float64).
Invariant: subtracting the slice maximum m first keeps every exponent <= 0, so exp never
overflows, and at least one term of the sum is exactly 1, so it never underflows to 0.
An empty array (an axis of length 0, or no slices at all) has nothing to normalise and is
returned as an empty array of the same shape, as torch.softmax does.
"""
import numpy as np

from llmref.validate import axis_index, float_array


def softmax_args(x, axis, values=True):
    """Validated (x, axis) of softmax, axis normalised to [0, x.ndim); every backend checks
    through this. With values=False x's values are not read (a backend that finds a NaN or
    +inf in its own pass over x calls again with values=True for the error)."""
    special = {} if values else {"allow_nan": True, "allow_inf": True}
    x = float_array("x", x, min_ndim=1, allow_neg_inf=True, **special)
    return x, axis_index("axis", axis, x.ndim)


def log_softmax_args(x, axis, values=True):
    """Validated (x, axis) of log_softmax; the same rules as softmax_args."""
    return softmax_args(x, axis, values)


def softmax(x, axis=-1):
    """softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m),   m = max_j x_j   (along `axis`).

    -inf entries get probability 0; a slice that is entirely -inf has no distribution and
    yields NaN, as torch.softmax does.
    """
    x, axis = softmax_args(x, axis)
    if x.size == 0:
        return x.copy()
    with np.errstate(invalid="ignore"):  # all -inf slice: -inf - (-inf) = NaN, by definition
        m = x.max(axis=axis, keepdims=True)  # (..., 1, ...)
        e = np.exp(x - m)
        return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """log_softmax(x)_i = (x_i - m) - log(sum_j exp(x_j - m)),   m = max_j x_j.

    Never computed as log(softmax(x)): a probability that underflows to 0 would turn a
    finite log-probability into -inf.
    """
    x, axis = log_softmax_args(x, axis)
    if x.size == 0:
        return x.copy()
    with np.errstate(invalid="ignore"):
        shifted = x - x.max(axis=axis, keepdims=True)  # (..., n, ...), max entry 0
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
