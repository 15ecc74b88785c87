"""Online (flash-style) attention on numba-cpu (reference: llmref.ref.online_attention): the
blocked attention of llmref.accel.numba_cpu._attention with the online softmax updated per
key block of block_size keys (the spec's blocks J_1, J_2, ..., from key 0), the scores of
several blocks formed by one matrix product. Checked by the reference's
online_attention_args; float16/bfloat16 inputs are widened to float32, every running
quantity is held in the compute dtype, the result rounded once.

online_rows, the shared row kernel of llmref.accel.kernels.online_attention compiled for the
CPU, is kv_cache_decode's attention.
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import online_attention as kernels
from llmref.accel.numba_cpu._attention import blocked_attention
from llmref.ref.online_attention import online_attention_args

online_rows = numba.njit(cache=True)(kernels.online_rows)  # kv_cache_decode runs it


def online_attention(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0, block_size=4):
    q, k, v, key_padding_mask, scale, block_size = online_attention_args(
        q, k, v, key_padding_mask, window, scale, block_size)
    out, lse = blocked_attention(widen(q), widen(k), widen(v),
                                 np.ascontiguousarray(key_padding_mask), bool(causal),
                                 int(window), scale, block=block_size)
    return out.astype(q.dtype, copy=False), lse.astype(q.dtype, copy=False)
