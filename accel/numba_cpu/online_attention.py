"""Online (flash-style) attention, the merge of partial attention states, and decoding
through a KV cache as numba.njit kernels (reference: llmref.ref.attention.online_attention,
merge_attention_states, kv_cache_decode).

online_attention walks each query row's keys block by block, keeping the running max m,
running sum l and the unnormalised output o (held in the output row):

    m' = max(m, max_{j in block} s_j)
    l' = l exp(m - m') + sum_j exp(s_j - m'),   o' = o exp(m - m') + sum_j exp(s_j - m') v_j
    out = o / l,  lse = m + log l               (a row with no key left: out 0, lse -inf)

merge_attention_states combines two (out, lse) pairs over disjoint key sets:

    M = max(lse_a, lse_b);  w_x = exp(lse_x - M);  lse = M + log(w_a + w_b)
    out = (w_a out_a + w_b out_b) / (w_a + w_b)

kv_cache_decode runs a server's loop: the prefill chunk, then one token per step, each step
rotating its queries and keys (rotate-half RoPE at the token positions), appending the keys
and values to a preallocated cache, and attending its queries over the cache so far with the
online kernel (bottom-right causal).

float16/bfloat16 inputs are widened to float32 on the host; scores and the output row are
held in the compute dtype (float32, or float64 for float64 inputs), the scalar running max
and sum in float64 (numba's float literals), and the result is rounded once at the end.
"""
import math

import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.ref.attention import kv_cache_decode_args, merge_states_args, online_attention_args
from llmref.ref.positions import rope_cos_sin, rope_inv_freq


@numba.njit(cache=True)
def _online_rows(q, k, v, keep_key, causal, window, scale, block_size, scores, out, lse):
    """out[b, h, i], lse[b, h, i] of every query row, one key block at a time."""
    batch, n_q_heads, len_q, dim = q.shape
    group = n_q_heads // k.shape[1]
    len_k = k.shape[2]
    dim_v = v.shape[3]
    for b in range(batch):
        for h in range(n_q_heads):
            kv_head = h // group
            for i in range(len_q):
                position = i + len_k - len_q  # bottom-right aligned absolute position
                hi = min(position, len_k - 1) if causal else len_k - 1
                lo = max(position - window + 1, 0) if window > 0 else 0
                out[b, h, i, :] = 0.0
                m = -np.inf
                total = 0.0
                for start in range(0, len_k, block_size):
                    stop = min(start + block_size, len_k)
                    # 1. the block's scores (-inf where masked) and their maximum
                    block_max = -np.inf
                    for j in range(start, stop):
                        scores[j - start] = -np.inf
                        if lo <= j <= hi and keep_key[b, j]:
                            dot = 0.0
                            for d in range(dim):
                                dot += q[b, h, i, d] * k[b, kv_head, j, d]
                            scores[j - start] = dot * scale
                            block_max = max(block_max, scores[j - start])
                    if block_max == -np.inf:
                        continue  # nothing kept in this block: the state is unchanged
                    # 2. rescale the state to the new maximum, then add the block
                    m_new = max(m, block_max)
                    rescale = math.exp(m - m_new)  # exp(-inf) = 0 before the first key
                    total *= rescale
                    for d in range(dim_v):
                        out[b, h, i, d] *= rescale
                    for j in range(start, stop):
                        if scores[j - start] != -np.inf:
                            p = math.exp(scores[j - start] - m_new)
                            total += p
                            for d in range(dim_v):
                                out[b, h, i, d] += p * v[b, kv_head, j, d]
                    m = m_new
                if total > 0:
                    for d in range(dim_v):
                        out[b, h, i, d] /= total
                    lse[b, h, i] = m + math.log(total)
                else:
                    lse[b, h, i] = -np.inf


def online_attention(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0, block_size=4):
    q, k, v, key_padding_mask, scale, block_size = online_attention_args(
        q, k, v, key_padding_mask, window, scale, block_size)
    dtype, acc = q.dtype, compute_dtype(q.dtype)
    out = np.empty(q.shape[:3] + (v.shape[3],), dtype=acc)  # (B, Hq, Lq, Dv)
    lse = np.empty(q.shape[:3], dtype=acc)  # (B, Hq, Lq)
    scores = np.empty(block_size, dtype=acc)
    _online_rows(widen(q), widen(k), widen(v), np.ascontiguousarray(key_padding_mask),
                 bool(causal), int(window), float(scale), block_size, scores, out, lse)
    return out.astype(dtype), lse.astype(dtype)


@numba.njit(cache=True)
def _merge_rows(out_a, lse_a, out_b, lse_b, out, lse):
    """Merge row r of the two states; two empty parts (lse -inf) give out 0, lse -inf."""
    for r in range(out_a.shape[0]):
        big = max(lse_a[r], lse_b[r])
        if big == -np.inf:
            out[r, :] = 0.0
            lse[r] = -np.inf
            continue
        w_a = math.exp(lse_a[r] - big)
        w_b = math.exp(lse_b[r] - big)
        total = w_a + w_b
        lse[r] = big + math.log(total)
        for d in range(out_a.shape[1]):
            out[r, d] = (w_a * out_a[r, d] + w_b * out_b[r, d]) / total


def check_states(out_a, lse_a, out_b, lse_b):
    """Validate the two states; returns them as (rows, Dv) and (rows,) in the compute dtype,
    with the output shape and dtype."""
    out_a, lse_a, out_b, lse_b = merge_states_args(out_a, lse_a, out_b, lse_b)
    dim_v = out_a.shape[-1]
    rows = [widen(out_a).reshape(-1, dim_v), widen(lse_a).reshape(-1),  # (rows, Dv), (rows,)
            widen(out_b).reshape(-1, dim_v), widen(lse_b).reshape(-1)]
    return rows, out_a.shape, out_a.dtype


def merge_attention_states(out_a, lse_a, out_b, lse_b):
    rows, shape, dtype = check_states(out_a, lse_a, out_b, lse_b)
    out = np.empty_like(rows[0])
    lse = np.empty_like(rows[1])
    _merge_rows(*rows, out, lse)
    return out.reshape(shape).astype(dtype), lse.reshape(shape[:-1]).astype(dtype)


# Keys per block of the online kernel when decoding through the cache.
DECODE_KEY_BLOCK = 16


@numba.njit(cache=True)
def _rope_append(x, cos, sin, start, stop, cache):
    """cache[b, h, t] = rotate-half RoPE of x[b, h, t] at position t, for t in [start, stop):
    pair i is (x[i], x[i + D/2]) -> (a cos_t,i - b sin_t,i, b cos_t,i + a sin_t,i)."""
    half = cos.shape[1]
    for b in range(x.shape[0]):
        for h in range(x.shape[1]):
            for t in range(start, stop):
                for i in range(half):
                    a, c = x[b, h, t, i], x[b, h, t, i + half]
                    cache[b, h, t, i] = a * cos[t, i] - c * sin[t, i]
                    cache[b, h, t, i + half] = c * cos[t, i] + a * sin[t, i]


def check_decode(q, k, v, prefill_len, rope_base):
    """Validate (the reference's kv_cache_decode_args); returns q, k, v, the scale 1/sqrt(D),
    the decode steps [(start, stop)] and the cos, sin tables (L, D/2) of positions 0..L-1
    rounded once to the compute dtype."""
    q, k, v, scale, prefill_len = kv_cache_decode_args(q, k, v, prefill_len, rope_base)
    length = q.shape[2]
    inv_freq, _ = rope_inv_freq(q.shape[-1], base=rope_base)
    cos, sin = rope_cos_sin(np.arange(length), inv_freq)  # (L, D/2), float64
    acc = compute_dtype(q.dtype)
    steps = [(0, prefill_len)] + [(t, t + 1) for t in range(prefill_len, length)]
    return q, k, v, scale, steps, cos.astype(acc), sin.astype(acc)


def kv_cache_decode(q, k, v, prefill_len=4, rope_base=10000.0):
    q, k, v, scale, steps, cos, sin = check_decode(q, k, v, prefill_len, rope_base)
    dtype, acc = q.dtype, compute_dtype(q.dtype)
    q, k, v = widen(q), widen(k), widen(v)
    length = q.shape[2]
    cache_k = np.zeros(k.shape, dtype=acc)  # (B, Hkv, L, D): filled left to right
    cache_v = np.zeros(v.shape, dtype=acc)
    q_rot = np.zeros(q.shape, dtype=acc)
    keep = np.ones((q.shape[0], length), dtype=np.bool_)  # no padding
    out = np.empty(q.shape[:3] + (v.shape[3],), dtype=acc)  # (B, Hq, L, Dv)
    lse = np.empty(q.shape[:3], dtype=acc)  # (B, Hq, L), not returned
    scores = np.empty(DECODE_KEY_BLOCK, dtype=acc)
    for start, stop in steps:
        _rope_append(k, cos, sin, start, stop, cache_k)
        cache_v[:, :, start:stop] = v[:, :, start:stop]
        _rope_append(q, cos, sin, start, stop, q_rot)
        # the step's queries over the cache so far; out and lse are written in place
        _online_rows(q_rot[:, :, start:stop], cache_k[:, :, :stop], cache_v[:, :, :stop],
                     keep[:, :stop], True, 0, scale, DECODE_KEY_BLOCK, scores,
                     out[:, :, start:stop], lse[:, :, start:stop])
    return out.astype(dtype)
