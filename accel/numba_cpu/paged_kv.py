"""Paged KV write and paged decode attention as numba.njit kernels
(reference: llmref.ref.paged_kv).

Decode: one pass over each sequence's blocks per (sequence, KV head), with an online softmax
(running max m, running sum l, running weighted sum acc) for every query head of the GQA
group, updated once per block; each block is read while it is in cache by all the heads of
the group. float16/bfloat16 inputs are widened to
float32; the result is rounded once to the input dtype.
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.paged_kv import kv_write_args, paged_attention_decode_args


@numba.njit(cache=True)
def _scatter_rows(src, slot_mapping, pool):
    """pool[slot_mapping[t]] = src[t] for every slot >= 0 (rows of raw words)."""
    for t in range(src.shape[0]):
        slot = slot_mapping[t]
        if slot >= 0:
            pool[slot, :] = src[t, :]


def _raw_rows(x, rows):
    """(rows, row_bytes // 2) uint16 view of a contiguous array: a bit-exact copy unit."""
    return np.ascontiguousarray(x).view(np.uint16).reshape(rows, -1)


def kv_write(key, value, slot_mapping, k_cache, v_cache):
    key, value, slot_mapping, k_cache, v_cache = kv_write_args(key, value, slot_mapping,
                                                               k_cache, v_cache)
    if key.shape[0] == 0:  # no new token: the pools unchanged
        return k_cache.copy(), v_cache.copy()
    slots = k_cache.shape[0] * k_cache.shape[1]
    k_out, v_out = k_cache.copy(), v_cache.copy()
    for src, pool in ((key, k_out), (value, v_out)):
        _scatter_rows(_raw_rows(src, src.shape[0]), slot_mapping.astype(np.int64),
                      pool.view(np.uint16).reshape(slots, -1))  # (slots, Hkv*D words), a view
    return k_out, v_out


# Reassociation lets LLVM vectorise the dot products and row updates; no flag assumes
# finite values (the running max starts at -inf).
FAST = {"reassoc", "contract"}


@numba.njit(cache=True, parallel=True, fastmath=FAST)
def _paged_decode(q, k_cache, v_cache, block_tables, seq_lens, scale, out):
    """out[b, h] = softmax(scale * K q) V over the tokens reached through block_tables[b].

    Per (sequence, KV head) and per block: scores of every query head of the group against
    the block's tokens, then one online-softmax rescale per head and block."""
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
