"""The LM head on numba-cpu (reference: llmref.ref.lm_head): logits[t, v] = h[t] . W[v],
accumulated in the compute dtype (float32 for float16/bfloat16) and rounded once. Checked by
the reference's lm_head_args.

The product is a few token rows against a (V, D) matrix far larger than the caches (a decode
step: T of 1-16, W of a quarter to a few GB), so its time is reading W once. The vocabulary
rows are spread over threads (prange; llmref.accel.numba_cpu._threads); each row of W is
dotted against four token rows at a time while it sits in L1 (one load of W per four fused
multiply-adds), the inner loop contiguous over d, its order of summation free, so LLVM
vectorises it. The shared scalar loop (llmref.accel.kernels.lm_head.logits, one dot per logit)
is numba-cuda's; on the CPU it reads W T times and runs 5x slower than NumPy's BLAS.

W's values are checked by the product's own reading of them, not by a pass of their own
(which read W a second time): with h finite, a NaN or inf anywhere in W makes every logit of
its row NaN or inf (0 * inf is NaN too), so a logit that is not finite sends the call back
to lm_head_args for the reference's error; where it finds none, the sum overflowed and the
logits stand.
"""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.lm_head import lm_head_args

ROWS = 32  # vocabulary rows per prange iteration


@numba.njit(cache=True, fastmath={"reassoc", "nsz", "contract"})
def _dot4(h, t, w, v, zero):
    """h[t + i] . w[v] for i < 4, summed in the dtype of `zero` in any order."""
    a0 = zero
    a1 = zero
    a2 = zero
    a3 = zero
    for d in range(w.shape[1]):
        x = w[v, d]
        a0 += h[t, d] * x
        a1 += h[t + 1, d] * x
        a2 += h[t + 2, d] * x
        a3 += h[t + 3, d] * x
    return a0, a1, a2, a3


@numba.njit(cache=True, fastmath={"reassoc", "nsz", "contract"})
def _dot1(h, t, w, v, zero):
    """h[t] . w[v], summed in the dtype of `zero` in any order."""
    a = zero
    for d in range(w.shape[1]):
        a += h[t, d] * w[v, d]
    return a


@threaded_loop()
def _logits(h, w, zero, out):
    """out[t, v] = sum_d h[t, d] w[v, d]; h (T, D), w (V, D), out (T, V)."""
    tokens, vocab = h.shape[0], w.shape[0]
    for b in numba.prange((vocab + ROWS - 1) // ROWS):
        for v in range(b * ROWS, min(vocab, (b + 1) * ROWS)):
            t = 0
            while t + 4 <= tokens:
                a0, a1, a2, a3 = _dot4(h, t, w, v, zero)
                out[t, v] = a0
                out[t + 1, v] = a1
                out[t + 2, v] = a2
                out[t + 3, v] = a3
                t += 4
            while t < tokens:
                out[t, v] = _dot1(h, t, w, v, zero)
                t += 1


def lm_head(h, embedding, output_weight, tied=False):
    h, w = lm_head_args(h, embedding, output_weight, tied, selected_values=False)
    w = widen(w)  # (V, D)
    rows = widen(h).reshape(math.prod(h.shape[:-1]), h.shape[-1])  # (T, D); T or D may be 0
    out = np.empty((rows.shape[0], w.shape[0]), rows.dtype)
    if out.size:
        _logits(rows.shape[0] * w.size, rows, w, rows.dtype.type(0), out)  # work: multiply-adds
    if rows.shape[0] == 0 or not np.isfinite(out).all():  # W unread, or a NaN/inf in it (or an overflow)
        lm_head_args(h, embedding, output_weight, tied)
    return out.reshape(h.shape[:-1] + (w.shape[0],)).astype(h.dtype, copy=False)
