"""The W8A16 matmul on numba-cpu (reference: llmref.ref.w8a16_matmul): each output's group dot
products with the integer codes, then scaled once, in vectorised loops over threads. The
argument checks are the reference's (w8a16_matmul_args).

Why this loop is not llmref.accel.kernels.w8a16_matmul's (which numba-cuda runs, a thread an
output): that one sums in float64 and in order, which LLVM cannot vectorise, and ran the
bench's decode GEMV (4096 x 4096, groups of 128) at 20-23 ms, under 1 GB/s of codes. Here the
sums are in the compute dtype (float32 for float32/float16/bfloat16 x, as the spec's float32
accumulation), reassociated so the codes' int8 -> float conversions and the multiply-adds run
as vectors, and a task's output columns are a function of their own (_columns, a
prange_body: noalias arrays) so that both builds vectorise:

    y[m, n] = sum_grp scales[n, grp] * sum_(k in grp) x[m, k] w_q[n, k]

Each code converts exactly and each group's dot product is rounded as float32 sums are; the
tolerance's reduction over K covers the order.
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.numba_cpu._threads import prange_body, threaded_loop
from llmref.ref.w8a16_matmul import w8a16_matmul_args

FAST = {"reassoc", "contract", "nsz"}  # reassociation for the sums; nothing assumes finiteness
TASKS = 16  # parallel tasks the output columns are dealt to


@prange_body(fastmath=FAST)
def _columns(x, w_q, scales, g, y, n0, n1):
    """y[m, n] for every row m and the columns n0 <= n < n1."""
    zero = y.dtype.type(0.0)
    for n in range(n0, n1):
        codes = w_q[n]  # (K,) int8, read from cache for every row of x after the first
        for m in range(x.shape[0]):
            xm, acc = x[m], zero
            for grp in range(scales.shape[1]):
                xg, wg = xm[grp * g:(grp + 1) * g], codes[grp * g:(grp + 1) * g]  # (G,) each
                part = zero
                for k in range(g):
                    part += xg[k] * y.dtype.type(wg[k])
                acc += part * scales[n, grp]
            y[m, n] = acc


@threaded_loop(fastmath=FAST)
def _w8a16(x, w_q, scales, g, y):
    """y = x W^T, the output columns dealt to TASKS parallel tasks of _columns."""
    n_cols = w_q.shape[0]
    for task in numba.prange(TASKS):
        _columns(x, w_q, scales, g, y, task * n_cols // TASKS, (task + 1) * n_cols // TASKS)


def w8a16_matmul(x, w_q, scales, group_size=0):
    x, w_q, scales, g = w8a16_matmul_args(x, w_q, scales, group_size)
    xw = widen(x)  # (M, K) in float32 (float64 for float64 inputs)
    sw = np.ascontiguousarray(scales, dtype=xw.dtype)  # (N, K/G)
    y = np.empty((x.shape[0], w_q.shape[0]), xw.dtype)
    _w8a16(y.size * x.shape[1], np.ascontiguousarray(xw), np.ascontiguousarray(w_q), sw, g, y)
    return y.astype(x.dtype, copy=False)
