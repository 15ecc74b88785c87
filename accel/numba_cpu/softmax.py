"""Softmax and log-softmax on numba-cpu (reference: llmref.ref.softmax). Checked by the
reference's softmax_args / log_softmax_args; float16/bfloat16 rows are widened to float32
(llmref.accel._host) and the result rounded once.

The rows are spread over threads (prange) when there are enough of them
(llmref.accel.numba_cpu._threads). Each row takes the passes of
llmref.accel.kernels.softmax, written here so LLVM vectorises them:

    m = max_j x_j                                 (a vectorised max of integer keys)
    s = sum_j exp(x_j - m)                         (blocks of CHUNK: llmref.accel.numba_cpu._exp,
                                                    in float64, to float32's accuracy for
                                                    float32 rows; summed in any order)
    y_j = exp(x_j - m) / s   or   (x_j - m) - log s

A row that is all -inf has no distribution: NaN, as the reference gives.
"""
import math

import numba
import numpy as np

from llmref.accel._host import rows_along
from llmref.accel.numba_cpu._exp import CHUNK, block_sum, exp_nonpositive, exp_nonpositive_to32, scratch
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.softmax import log_softmax_args, softmax_args


@numba.njit(cache=True)
def _row_max(x, bits, r):
    """max_j x[r, j] through integer keys of x's bits (bits: x viewed as int32 or int64),

        key(b) = b ^ ((b >> (w - 1)) & (2^(w - 1) - 1)),   x < x' <=> key(b) < key(b'),

    which leave positive floats as they are and reverse the order of the negative ones; the
    key is its own inverse. LLVM vectorises this integer max, not the float one (numba sets no
    fast-math flags on the select of `v if v > m else m`, so that loop ran one lane: 1.1 ms
    against 0.18 ms for 16 rows of 128256 floats). No NaN or +inf reaches here (rejected by
    softmax_args); -inf is the least key."""
    row = bits[r]
    low = row.dtype.type(np.iinfo(row.dtype).max)  # 2^(w-1) - 1
    shift = row.dtype.type(8 * row.itemsize - 1)
    m = row.dtype.type(np.iinfo(row.dtype).min)
    for j in range(row.shape[0]):
        k = row[j] ^ ((row[j] >> shift) & low)
        m = k if k > m else m
    found = np.empty(1, row.dtype)
    found[0] = m ^ ((m >> shift) & low)
    return found.view(x.dtype)[0]


@numba.njit(cache=True, fastmath={"contract"})  # fused multiply-adds in exp's polynomial
def _exp_sum_row(x, r, m, log, out):
    """sum_j exp(x[r, j] - m); out[r, j] becomes x[r, j] - m (log) or exp(x[r, j] - m). The
    exponentials are float64's to float32 accuracy when out is float32."""
    to32 = out.itemsize == 4
    t, e, half, rest = scratch()
    s = 0.0
    for j0 in range(0, x.shape[1], CHUNK):
        w = min(CHUNK, x.shape[1] - j0)
        xb, ob = x[r, j0:], out[r, j0:]  # the block's views: an index from 0 is never
        for i in range(w):  # negative, so x[r, j0 + i]'s wrap-around test (which kept
            t[i] = np.float64(xb[i]) - m  # these loops scalar: 2x slower) is gone
            if log:
                ob[i] = t[i]
        if to32:
            exp_nonpositive_to32(t, e, w)
        else:
            exp_nonpositive(t, e, half, rest, w)
        s += block_sum(e, w)
        if not log:
            for i in range(w):
                ob[i] = e[i]
    return s


@threaded_loop()
def _softmax_rows(x, bits, log, out):
    for row in numba.prange(x.shape[0]):
        r = np.int64(row)  # uint64 in the parfor body: callees would compile twice
        m = np.float64(_row_max(x, bits, r))
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
    bits = rows.view(np.int32 if rows.dtype == np.float32 else np.int64)  # (rows, n): float32 or float64
    _softmax_rows(rows.size, rows, bits, log, out)
    return restore(out)


def softmax(x, axis=-1):
    return _run(*softmax_args(x, axis), False)


def log_softmax(x, axis=-1):
    return _run(*log_softmax_args(x, axis), True)
