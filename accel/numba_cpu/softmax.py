"""Softmax and log-softmax as numba.njit row kernels (reference: llmref.ref.softmax)."""
import math

import numba
import numpy as np

from llmref.accel._host import rows_along
from llmref.ref.softmax import log_softmax_args, softmax_args


@numba.njit(cache=True)
def _softmax_rows(x, out, log):
    """out[r] = softmax(x[r]) or log_softmax(x[r]): a max pass, then one exp per element."""
    for r in range(x.shape[0]):
        m = -np.inf
        for j in range(x.shape[1]):
            m = max(m, x[r, j])
        s = 0.0
        for j in range(x.shape[1]):
            shifted = x[r, j] - m
            e = math.exp(shifted)
            s += e
            out[r, j] = shifted if log else e
        if log:
            log_s = math.log(s)
            for j in range(x.shape[1]):
                out[r, j] -= log_s
        else:
            inv_s = 1.0 / s
            for j in range(x.shape[1]):
                out[r, j] *= inv_s


def _run(x, axis, log):
    """x and axis already validated; an empty x has nothing to normalise."""
    if x.size == 0:
        return x.copy()
    rows, restore = rows_along(x, axis)
    out = np.empty_like(rows)
    _softmax_rows(rows, out, log)
    return restore(out)


def softmax(x, axis=-1):
    return _run(*softmax_args(x, axis), False)


def log_softmax(x, axis=-1):
    return _run(*log_softmax_args(x, axis), True)
