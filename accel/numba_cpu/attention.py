"""Scaled dot-product attention as a numba.njit kernel (reference: llmref.ref.attention.sdpa).

One query row at a time: scores of the keys the masks leave, their maximum, then
out = sum_j exp(s_j - max) v_j / sum_j exp(s_j - max). Query head h reads KV head
h // (Hq / Hkv); the causal and window bounds become the key range [lo, hi] of the row.
"""
import math

import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.ref.attention import sdpa_args


@numba.njit(cache=True)
def _sdpa_rows(q, k, v, keep_key, causal, window, scale, out):
    """out[b, h, i] = attention of query row (b, h, i); rows with no key left stay 0."""
    batch, n_q_heads, len_q, dim = q.shape
    group = n_q_heads // k.shape[1]
    len_k = k.shape[2]
    scores = np.empty(len_k, dtype=np.float64)
    for b in range(batch):
        for h in range(n_q_heads):
            kv_head = h // group
            for i in range(len_q):
                position = i + len_k - len_q  # bottom-right aligned absolute position
                hi = min(position, len_k - 1) if causal else len_k - 1
                lo = max(position - window + 1, 0) if window > 0 else 0
                m = -np.inf
                for j in range(lo, hi + 1):
                    if keep_key[b, j]:
                        dot = 0.0
                        for d in range(dim):
                            dot += q[b, h, i, d] * k[b, kv_head, j, d]
                        scores[j] = dot * scale
                        m = max(m, scores[j])
                out[b, h, i, :] = 0.0
                if m == -np.inf:
                    continue
                total = 0.0
                for j in range(lo, hi + 1):
                    if keep_key[b, j]:
                        p = math.exp(scores[j] - m)
                        total += p
                        for d in range(v.shape[3]):
                            out[b, h, i, d] += p * v[b, kv_head, j, d]
                for d in range(v.shape[3]):
                    out[b, h, i, d] /= total


def sdpa(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    dtype = q.dtype
    out = np.empty(q.shape[:3] + (v.shape[3],), dtype=compute_dtype(dtype))  # (B, Hq, Lq, Dv)
    _sdpa_rows(widen(q), widen(k), widen(v), np.ascontiguousarray(key_padding_mask),
               bool(causal), int(window), float(scale), out)
    return out.astype(dtype)
