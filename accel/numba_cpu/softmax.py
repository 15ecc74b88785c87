"""Softmax and log-softmax on numba-cpu (reference: llmref.ref.softmax). Checked by the
reference's softmax_args / log_softmax_args, x's values by the row maximum's pass (a NaN or
+inf sends the call back to softmax_args for its error); float16/bfloat16 rows are widened to
float32 (llmref.accel._host) and the result rounded once.

The rows are spread over threads (prange) when there are enough of them
(llmref.accel.numba_cpu._threads). Each row takes the passes of
llmref.accel.kernels.softmax, written here so LLVM vectorises them:

    m = max_j x_j                                 (a vectorised max of integer keys)
    s = sum_j exp(x_j - m)                         (blocks of CHUNK: llmref.accel.numba_cpu._exp
                                                    at the row's dtype; s summed in float64
                                                    in any order)
    y_j = exp(x_j - m) / s   or   (x_j - m) - log s

A float32 row is computed in float32, as torch's CPU softmax computes it: t = x_j - m
rounded once (an error of at most u |t|, u = 2^-24; none where x_j and m are within a factor
of two, Sterbenz), exp_nonpositive32 (1.7 ulps, 3.4 u) and two more roundings, of 1 / s to
float32 and of the product, so an element carries at most about (|t| + 5.4) u of relative
error. Relative to the row's largest y = 1 / s that is (|t| + 5.4) u exp(t) <= 5.4 u, where
the spec allows 4 sqrt(N) u (atol, rtol times max |y|). The float32 exp takes eight lanes a
vector where float64's took four: on one thread 16 rows of 128,256 took 1.6-2.4 ms against
2.9-3.8 ms through float64 exponentials (the reference: 2.5-3.3 ms), measured in one process.

A row that is all -inf has no distribution: NaN, as the reference gives.
"""
import math

import numba
import numpy as np

from llmref.accel._host import rows_along
from llmref.accel.numba_cpu._exp import CHUNK, bits_like, block_sum, exp_block
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.softmax import log_softmax_args, softmax_args


@numba.njit(cache=True)
def _row_max(x, bits, r):
    """(max_j x[r, j], whether the row holds a NaN or +inf), through integer keys of x's bits
    (bits: x viewed as int32 or int64),

        key(b) = b ^ ((b >> (w - 1)) & (2^(w - 1) - 1)),   x < x' <=> key(b) < key(b'),

    which leave positive floats as they are and reverse the order of the negative ones; the
    key is its own inverse. LLVM vectorises this integer max, not the float one (numba sets no
    fast-math flags on the select of `v if v > m else m`, so that loop ran one lane: 1.1 ms
    against 0.18 ms for 16 rows of 128256 floats). The keys also order the values the row must
    not hold: +inf and every NaN with the sign bit clear at or above key(+inf), the NaNs with
    it set below key(-inf), so the largest and the least key find them in the same pass, where
    a check of its own (softmax_args' sum) read x once more. -inf is the least valid key."""
    row = bits[r]
    low = row.dtype.type(np.iinfo(row.dtype).max)  # 2^(w-1) - 1
    shift = row.dtype.type(8 * row.itemsize - 1)
    infinities = np.array([np.inf, -np.inf], x.dtype).view(row.dtype)
    pos_inf, neg_inf = infinities[0], infinities[1] ^ low  # the keys of +inf and -inf
    m = row.dtype.type(np.iinfo(row.dtype).min)
    least = row.dtype.type(np.iinfo(row.dtype).max)
    for j in range(row.shape[0]):
        k = row[j] ^ ((row[j] >> shift) & low)
        m = k if k > m else m
        least = k if k < least else least
    found = np.empty(1, row.dtype)
    found[0] = m ^ ((m >> shift) & low)
    return found.view(x.dtype)[0], m >= pos_inf or least < neg_inf


@numba.njit(cache=True, fastmath={"contract"})  # fused multiply-adds in exp's polynomial
def _exp_sum_row(x, r, m, log, out):
    """sum_j exp(x[r, j] - m), in float64; out[r, j] becomes x[r, j] - m (log) or
    exp(x[r, j] - m), both at x's dtype."""
    t, e = np.empty(CHUNK, x.dtype), np.empty(CHUNK, x.dtype)
    half, rest = bits_like(t), bits_like(t)
    s = 0.0
    for j0 in range(0, x.shape[1], CHUNK):
        w = min(CHUNK, x.shape[1] - j0)
        xb, ob = x[r, j0:], out[r, j0:]  # the block's views: an index from 0 is never
        for i in range(w):  # negative, so x[r, j0 + i]'s wrap-around test (which kept
            t[i] = xb[i] - m  # these loops scalar: 2x slower) is gone
            if log:
                ob[i] = t[i]
        exp_block(t, e, half, rest, w)
        s += block_sum(e, w)
        if not log:
            for i in range(w):
                ob[i] = e[i]
    return s


@threaded_loop()
def _softmax_rows(x, bits, log, out):
    """Every row of out; returns how many rows of x hold a NaN or +inf (left unwritten)."""
    invalid = 0
    for row in numba.prange(x.shape[0]):
        r = np.int64(row)  # uint64 in the parfor body: callees would compile twice
        m, bad = _row_max(x, bits, r)  # m at x's dtype
        if bad:
            invalid += 1
            continue
        if m == -np.inf:  # all -inf: -inf - (-inf) is NaN, by definition
            out[r, :] = np.nan
            continue
        s = _exp_sum_row(x, r, m, log, out)
        if log:
            log_s = x.dtype.type(math.log(s))
            for j in range(x.shape[1]):
                out[r, j] = out[r, j] - log_s
        else:
            inv_s = x.dtype.type(1.0 / s)
            for j in range(x.shape[1]):
                out[r, j] = out[r, j] * inv_s
    return invalid


def _run(args, x, axis, log):
    """args(x, axis) with x's values unread; the rows find a NaN or +inf themselves, and
    args is called again to raise its error."""
    x_checked, axis = args(x, axis, values=False)
    if x_checked.size == 0:
        return x_checked.copy()
    rows, restore = rows_along(x_checked, axis)  # (rows, n)
    out = np.empty_like(rows)
    bits = rows.view(np.int32 if rows.dtype == np.float32 else np.int64)  # (rows, n): float32 or float64
    if _softmax_rows(rows.size, rows, bits, log, out):
        args(x, axis)  # raises, naming x
    return restore(out)


def softmax(x, axis=-1):
    return _run(softmax_args, x, axis, False)


def log_softmax(x, axis=-1):
    return _run(log_softmax_args, x, axis, True)
