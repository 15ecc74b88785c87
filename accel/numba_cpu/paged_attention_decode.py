"""Paged decode attention on numba-cpu (reference: llmref.ref.paged_attention_decode).

Why this loop is not shared with numba-cuda (llmref.accel.numba_cuda.paged_attention_decode):
the two walk the same sums in the order each machine reads memory best. Here one CPU thread
takes a (sequence, KV head) pair and reads each block once for all the query heads of its
GQA group, while it is in cache; the GPU backend gives every (sequence, query head) a thread
block whose threads split the head dimension and reduce q . k in shared memory (and the cupy
backend adds split-K over the context). The math is the same online softmax either way.

Per (sequence, KV head) and per block: the scores of every query head of the group against
the block's tokens, then one online-softmax rescale per head and block (running max m,
running sum l, running weighted sum acc). Checked by the reference's
paged_attention_decode_args; float16/bfloat16 inputs are widened to float32; the result is
rounded once to the input dtype.
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.paged_attention_decode import paged_attention_decode_args

# Reassociation lets LLVM vectorise the dot products and row updates; no flag assumes
# finite values (the running max starts at -inf).
FAST = {"reassoc", "contract"}


@numba.njit(cache=True, parallel=True, fastmath=FAST)
def _paged_decode(q, k_cache, v_cache, block_tables, seq_lens, scale, out):
    """out[b, h] = softmax(scale * K q) V over the tokens reached through block_tables[b]."""
    batch, hq, d = q.shape
    block_size, hkv = k_cache.shape[1], k_cache.shape[2]
    group = hq // hkv
    zero = q.dtype.type(0.0)
    for bg in numba.prange(batch * hkv):
        b, g = bg // hkv, bg % hkv
        n = seq_lens[b]
        m = np.full(group, -np.inf, dtype=q.dtype)
        l = np.zeros(group, dtype=q.dtype)
        acc = np.zeros((group, d), dtype=q.dtype)
        s = np.empty(block_size, dtype=q.dtype)
        for logical in range((n + block_size - 1) // block_size):
            block = block_tables[b, logical]
            tokens = min(block_size, n - logical * block_size)
            for i in range(group):
                h = g * group + i
                block_max = m[i]
                for t in range(tokens):
                    dot = zero
                    for e in range(d):
                        dot += q[b, h, e] * k_cache[block, t, g, e]
                    s[t] = dot * scale
                    block_max = max(block_max, s[t])
                correction = np.exp(m[i] - block_max)  # rescale what was accumulated so far
                l[i] *= correction
                for e in range(d):
                    acc[i, e] *= correction
                for t in range(tokens):
                    p = np.exp(s[t] - block_max)
                    l[i] += p
                    for e in range(d):
                        acc[i, e] += p * v_cache[block, t, g, e]
                m[i] = block_max
        for i in range(group):
            for e in range(d):
                out[b, g * group + i, e] = acc[i, e] / l[i]


def paged_attention_decode(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    q, k_cache, v_cache, block_tables, seq_lens, scale = paged_attention_decode_args(
        q, k_cache, v_cache, block_tables, seq_lens, scale)
    if q.shape[0] == 0:  # no sequence: an empty output
        return q.copy()
    wq, wk, wv = widen(q), widen(k_cache), widen(v_cache)
    out = np.empty_like(wq)
    _paged_decode(wq, wk, wv, block_tables.astype(np.int64), seq_lens.astype(np.int64),
                  wq.dtype.type(scale), out)
    return out.astype(q.dtype)
