"""Scaled dot-product attention on numba-cpu (reference: llmref.ref.sdpa): the blocked
attention of llmref.accel.numba_cpu._attention (query tiles of each GQA group against spans
of keys by matrix products, key spans wholly masked never read, the softmax of a span
compiled), with one online-softmax block per span. Checked by the reference's sdpa_args;
float16/bfloat16 inputs are widened to float32, every running quantity is held in the
compute dtype, the result rounded once.
"""
import numpy as np

from llmref.accel._host import widen
from llmref.accel.numba_cpu._attention import blocked_attention
from llmref.ref.sdpa import sdpa_args


def sdpa(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    out, _ = blocked_attention(widen(q), widen(k), widen(v), np.ascontiguousarray(key_padding_mask),
                               bool(causal), int(window), scale)
    return out.astype(q.dtype)
