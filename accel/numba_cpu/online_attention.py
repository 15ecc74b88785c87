"""Online (flash-style) attention on numba-cpu (reference: llmref.ref.online_attention): the
shared row math of llmref.accel.kernels.online_attention over every query row, key block by
key block. Checked by the reference's online_attention_args; float16/bfloat16 inputs are
widened to float32, every running quantity is held in the compute dtype, the result rounded
once.
"""
import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.kernels import online_attention as kernels
from llmref.ref.online_attention import online_attention_args

online_rows = numba.njit(cache=True)(kernels.online_rows)  # kv_cache_decode runs it too


def online_attention(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0, block_size=4):
    q, k, v, key_padding_mask, scale, block_size = online_attention_args(
        q, k, v, key_padding_mask, window, scale, block_size)
    acc = compute_dtype(q.dtype)
    out = np.empty(q.shape[:3] + (v.shape[3],), dtype=acc)  # (B, Hq, Lq, Dv)
    lse = np.empty(q.shape[:3], dtype=acc)  # (B, Hq, Lq)
    scores = np.empty((1, block_size), dtype=acc)  # the one scratch row of a serial loop
    online_rows(widen(q), widen(k), widen(v), np.ascontiguousarray(key_padding_mask),
                bool(causal), int(window), acc.type(scale), acc.type(0), acc.type(-np.inf),
                0, 1, scores, out, lse)
    return out.astype(q.dtype), lse.astype(q.dtype)
