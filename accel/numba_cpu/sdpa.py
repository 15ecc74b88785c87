"""Scaled dot-product attention on numba-cpu (reference: llmref.ref.sdpa): the online
attention row math (llmref.accel.kernels.online_attention) with key blocks of one key, i.e.
one pass per query row with the streaming softmax (running max and sum, the output rescaled
when the maximum rises). Checked by the reference's sdpa_args; float16/bfloat16 inputs are
widened to float32, every running quantity is held in the compute dtype, the result rounded
once.
"""
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cpu.online_attention import online_rows
from llmref.ref.sdpa import sdpa_args


def sdpa(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    acc = compute_dtype(q.dtype)
    out = np.empty(q.shape[:3] + (v.shape[3],), dtype=acc)  # (B, Hq, Lq, Dv)
    lse = np.empty(q.shape[:3], dtype=acc)  # (B, Hq, Lq), not returned
    scores = np.empty((1, 1), dtype=acc)  # blocks of one key
    online_rows(widen(q), widen(k), widen(v), np.ascontiguousarray(key_padding_mask),
                bool(causal), int(window), acc.type(scale), acc.type(0), acc.type(-np.inf),
                0, 1, scores, out, lse)
    return out.astype(q.dtype)
