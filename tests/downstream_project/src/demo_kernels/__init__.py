"""Kernels of a project that is not llmref: a softmax (and, to demonstrate failures, one that
forgets the max subtraction) and an RMSNorm."""
import numpy as np


def softmax(x, axis=-1):
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=axis, keepdims=True, initial=-np.inf))  # initial: an empty axis
        return e / e.sum(axis=axis, keepdims=True)


def softmax_without_max(x, axis=-1):
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x)
        return e / e.sum(axis=axis, keepdims=True)


def rmsnorm(x, weight, eps, weight_offset):
    wide = x.astype(np.float32)
    y = wide / np.sqrt(np.mean(wide * wide, axis=-1, keepdims=True) + np.float32(eps))
    return (y * (weight.astype(np.float32) + np.float32(weight_offset))).astype(x.dtype)


def log_softmax_via_log(x, axis=-1):
    """log(softmax(x)): right until a probability underflows to 0 (a known limitation)."""
    with np.errstate(divide="ignore"):
        return np.log(softmax(x, axis))
