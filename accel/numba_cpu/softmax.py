"""Softmax and log-softmax on numba-cpu (reference: llmref.ref.softmax). Checked by the
reference's softmax_args / log_softmax_args; float16/bfloat16 rows are widened to float32
(llmref.accel._host) and the result rounded once.

The rows are spread over threads (prange) when there are enough of them
(llmref.accel.numba_cpu._threads). Each row takes the passes of
llmref.accel.kernels.softmax, written here so LLVM vectorises them:

    m = max_j x_j                                 (a vectorised max)
    s = sum_j exp(x_j - m)                         (blocks of CHUNK: llmref.accel.numba_cpu._exp,
                                                    summed in float64 in any order)
    y_j = exp(x_j - m) / s   or   (x_j - m) - log s

A row that is all -inf has no distribution: NaN, as the reference gives.
"""
import math

import numba
import numpy as np

from llmref.accel._host import rows_along
from llmref.accel.numba_cpu._exp import CHUNK, block_sum, exp_nonpositive, scratch
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.softmax import log_softmax_args, softmax_args


@numba.njit(cache=True, fastmath={"reassoc", "nsz"})
def _row_max(x, r):
    """max_j x[r, j]; the order of comparisons is free (no NaN reaches here)."""
    m = -np.inf
    for j in range(x.shape[1]):
        v = x[r, j]
        m = v if v > m else m
    return m


@numba.njit(cache=True, fastmath={"contract"})  # fused multiply-adds in exp's polynomial
def _exp_sum_row(x, r, m, log, out):
    """sum_j exp(x[r, j] - m); out[r, j] becomes x[r, j] - m (log) or exp(x[r, j] - m)."""
    t, e, half, rest = scratch()
    s = 0.0
    for j0 in range(0, x.shape[1], CHUNK):
        w = min(CHUNK, x.shape[1] - j0)
        for i in range(w):
            t[i] = np.float64(x[r, j0 + i]) - m
            if log:
                out[r, j0 + i] = t[i]
        exp_nonpositive(t, e, half, rest, w)
        s += block_sum(e, w)
        if not log:
            for i in range(w):
                out[r, j0 + i] = e[i]
    return s


@threaded_loop()
def _softmax_rows(x, log, out):
    for row in numba.prange(x.shape[0]):
        r = np.int64(row)  # uint64 in the parfor body: callees would compile twice
        m = np.float64(_row_max(x, r))
        if m == -np.inf:  # all -inf: -inf - (-inf) is NaN, by definition
            out[r, :] = np.nan
            continue
        s = _exp_sum_row(x, r, m, log, out)
        if log:
            log_s = math.log(s)
            for j in range(x.shape[1]):
                out[r, j] = out[r, j] - log_s
        else:
            inv_s = 1.0 / s
            for j in range(x.shape[1]):
                out[r, j] = out[r, j] * inv_s


def _run(x, axis, log):
    """x and axis already validated; an empty x has nothing to normalise."""
    if x.size == 0:
        return x.copy()
    rows, restore = rows_along(x, axis)  # (rows, n)
    out = np.empty_like(rows)
    _softmax_rows(rows.size, rows, log, out)
    return restore(out)


def softmax(x, axis=-1):
    return _run(*softmax_args(x, axis), False)


def log_softmax(x, axis=-1):
    return _run(*log_softmax_args(x, axis), True)
