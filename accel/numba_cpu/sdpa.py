"""Scaled dot-product attention on numba-cpu (reference: llmref.ref.sdpa): the blocked
attention of llmref.accel.numba_cpu._attention (query tiles of each GQA group against spans
of keys by matrix products, key spans wholly masked never read, the softmax of a span
compiled), with one online-softmax block per span. Checked by the reference's sdpa_args;
float16/bfloat16 inputs are widened to float32, every running quantity is held in the
compute dtype, the result rounded once.

A small problem (at most SMALL scores: a decode step or a toy model's prefill) runs instead
the shared row kernel llmref.accel.kernels.online_attention.online_rows in one compiled call
with key blocks of one key, the streaming softmax: the tiles' per-call overhead (several
NumPy calls per group and tile) was most of such a call, and made a 2-layer model's
per-token path slower than the reference's.
"""
import math

import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cpu._attention import blocked_attention
from llmref.accel.numba_cpu.online_attention import online_rows
from llmref.ref.sdpa import sdpa_args

SMALL = 1 << 16  # scores (B Hq Lq Lk) up to which one compiled row loop is faster


def sdpa(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    keep = np.ascontiguousarray(key_padding_mask)
    if math.prod(q.shape[:3]) * k.shape[2] > SMALL:
        out, _ = blocked_attention(widen(q), widen(k), widen(v), keep, bool(causal), int(window),
                                   scale)
        return out.astype(q.dtype, copy=False)
    acc = compute_dtype(q.dtype)
    out = np.empty(q.shape[:3] + (v.shape[3],), dtype=acc)  # (B, Hq, Lq, Dv)
    lse = np.empty(q.shape[:3], dtype=acc)  # (B, Hq, Lq), not returned
    online_rows(widen(q), widen(k), widen(v), keep, bool(causal), int(window), acc.type(scale),
                acc.type(0), acc.type(-np.inf), 0, 1, np.empty((1, 1), dtype=acc), out, lse)
    return out.astype(q.dtype, copy=False)
