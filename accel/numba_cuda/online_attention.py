"""Online (flash-style) attention, the merge of partial attention states, and decoding
through a device-resident KV cache as numba.cuda kernels (reference:
llmref.ref.attention.online_attention, merge_attention_states, kv_cache_decode).

online_attention: one thread per (batch, head, query) row. For each key block the thread
writes the block's scores into its own row of a scratch buffer (rows, block_size), takes
their maximum, rescales its running sum l and unnormalised output o (held in the output
row) by exp(m - m'), and adds the block:

    m' = max(m, max_j s_j);  l' = l exp(m - m') + sum_j exp(s_j - m');
    o' = o exp(m - m') + sum_j exp(s_j - m') v_j;   out = o / l,  lse = m + log l

merge_attention_states: one thread per row of the two states:

    M = max(lse_a, lse_b);  w_x = exp(lse_x - M);  lse = M + log(w_a + w_b)
    out = (w_a out_a + w_b out_b) / (w_a + w_b)

kv_cache_decode keeps q, k, v and the preallocated cache on the device and runs a server's
loop: the prefill chunk, then one token per step; each step launches a rope-and-append kernel
(rotate-half RoPE of the step's keys into the cache, of its queries into a rotated-query
buffer, the values copied into the value cache) and the online kernel for the step's queries
over the cache so far (bottom-right causal).

float16/bfloat16 inputs are widened to float32 on the host; every running quantity is
accumulated in float32 (float64 for float64 inputs); the result is rounded once to the
input dtype. Outputs are written into guarded buffers.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cpu.online_attention import DECODE_KEY_BLOCK, check_decode, check_states
from llmref.backends import simulated
from llmref.ref.attention import online_attention_args

THREADS = 32 if simulated() else 128


def _make_online_kernel(acc):
    """The row kernel with its running max, sums and dot products in `acc` (float32/64)."""
    @cuda.jit
    def online_rows(q, k, v, keep_key, causal, window, scale, scores, out, lse):
        row = cuda.grid(1)
        batch, n_q_heads, len_q, dim = q.shape
        if row >= batch * n_q_heads * len_q:
            return
        b = row // (n_q_heads * len_q)
        h = (row // len_q) % n_q_heads
        i = row % len_q
        kv_head = h // (n_q_heads // k.shape[1])
        len_k = k.shape[2]
        dim_v = v.shape[3]
        block_size = scores.shape[1]
        position = i + len_k - len_q  # bottom-right aligned absolute position
        hi = min(position, len_k - 1) if causal else len_k - 1
        lo = max(position - window + 1, 0) if window > 0 else 0
        for d in range(dim_v):
            out[b, h, i, d] = 0
        m = acc(-math.inf)
        total = acc(0.0)
        for start in range(0, len_k, block_size):
            stop = min(start + block_size, len_k)
            # 1. the block's scores (-inf where masked) and their maximum
            block_max = acc(-math.inf)
            for j in range(start, stop):
                s = acc(-math.inf)
                if lo <= j and j <= hi and keep_key[b, j]:
                    dot = acc(0.0)
                    for d in range(dim):
                        dot += q[b, h, i, d] * k[b, kv_head, j, d]
                    s = dot * acc(scale)
                scores[row, j - start] = s
                block_max = max(block_max, s)
            if block_max == -math.inf:
                continue  # nothing kept in this block: the state is unchanged
            # 2. rescale the state to the new maximum, then add the block
            m_new = max(m, block_max)
            rescale = math.exp(m - m_new)  # exp(-inf) = 0 before the first key
            total = total * rescale
            for d in range(dim_v):
                out[b, h, i, d] = out[b, h, i, d] * rescale
            for j in range(start, stop):
                s = scores[row, j - start]
                if s != -math.inf:
                    p = math.exp(s - m_new)
                    total += p
                    for d in range(dim_v):
                        out[b, h, i, d] = out[b, h, i, d] + p * v[b, kv_head, j, d]
            m = m_new
        if total > 0:
            for d in range(dim_v):
                out[b, h, i, d] = out[b, h, i, d] / total
            lse[b, h, i] = m + math.log(total)
        else:
            lse[b, h, i] = -math.inf

    return online_rows


def _make_merge_kernel(acc):
    """The merge kernel with its weights in `acc` (float32/64)."""
    @cuda.jit
    def merge_rows(out_a, lse_a, out_b, lse_b, out, lse):
        r = cuda.grid(1)
        if r >= out_a.shape[0]:
            return
        big = max(lse_a[r], lse_b[r])
        if big == -math.inf:  # both parts empty
            for d in range(out_a.shape[1]):
                out[r, d] = 0
            lse[r] = -math.inf
            return
        w_a = math.exp(lse_a[r] - big)
        w_b = math.exp(lse_b[r] - big)
        total = acc(w_a + w_b)
        lse[r] = big + math.log(total)
        for d in range(out_a.shape[1]):
            out[r, d] = (w_a * out_a[r, d] + w_b * out_b[r, d]) / total

    return merge_rows


@cuda.jit
def _rope_append(x, cos, sin, start, stop, rotate, cache):
    """cache[b, h, t] = x[b, h, t] for t in [start, stop), rotated by rotate-half RoPE at
    position t when `rotate`: pair i is (x[i], x[i + D/2]). One thread per row."""
    row = cuda.grid(1)
    batch, heads, _, dim = x.shape
    steps = stop - start
    if row >= batch * heads * steps:
        return
    b = row // (heads * steps)
    h = (row // steps) % heads
    t = start + row % steps
    if not rotate:
        for d in range(dim):
            cache[b, h, t, d] = x[b, h, t, d]
        return
    half = cos.shape[1]
    for i in range(half):
        a = x[b, h, t, i]
        c = x[b, h, t, i + half]
        cache[b, h, t, i] = a * cos[t, i] - c * sin[t, i]
        cache[b, h, t, i + half] = c * cos[t, i] + a * sin[t, i]


_ONLINE = {np.dtype(np.float32): _make_online_kernel(float32),
           np.dtype(np.float64): _make_online_kernel(float64)}
_MERGE = {np.dtype(np.float32): _make_merge_kernel(float32),
          np.dtype(np.float64): _make_merge_kernel(float64)}


def _guarded(shape, dtype):
    """A guarded host buffer, its device copy, and the device view of its interior."""
    n = int(np.prod(shape))
    buf = guarded_host_buffer(n, dtype)
    d_buf = cuda.to_device(buf)
    return d_buf, interior(d_buf, n).reshape(shape)


def _fetch(d_buf, shape, what):
    """Copy back, check both guards, return the interior."""
    n = int(np.prod(shape))
    buf = d_buf.copy_to_host()
    check_guards(buf, n, what)
    return interior(buf, n).reshape(shape)


def online_attention(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0, block_size=4):
    q, k, v, key_padding_mask, scale, block_size = online_attention_args(
        q, k, v, key_padding_mask, window, scale, block_size)
    acc = compute_dtype(q.dtype)
    out_shape, lse_shape = q.shape[:3] + (v.shape[3],), q.shape[:3]  # (B, Hq, Lq, Dv), (B, Hq, Lq)
    d_out_buf, d_out = _guarded(out_shape, acc)
    d_lse_buf, d_lse = _guarded(lse_shape, acc)
    rows = int(np.prod(lse_shape))
    scores = cuda.device_array((max(rows, 1), block_size), dtype=acc)  # one scratch row each
    blocks = max(1, (rows + THREADS - 1) // THREADS)
    _ONLINE[acc][blocks, THREADS](cuda.to_device(widen(q)), cuda.to_device(widen(k)),
                                  cuda.to_device(widen(v)),
                                  cuda.to_device(np.ascontiguousarray(key_padding_mask)),
                                  bool(causal), int(window), float(scale), scores, d_out, d_lse)
    out = _fetch(d_out_buf, out_shape, "numba-cuda online_attention out")
    lse = _fetch(d_lse_buf, lse_shape, "numba-cuda online_attention lse")
    return out.astype(q.dtype), lse.astype(q.dtype)


def merge_attention_states(out_a, lse_a, out_b, lse_b):
    rows, shape, dtype = check_states(out_a, lse_a, out_b, lse_b)
    acc = rows[0].dtype
    d_out_buf, d_out = _guarded(rows[0].shape, acc)  # (rows, Dv)
    d_lse_buf, d_lse = _guarded(rows[1].shape, acc)  # (rows,)
    blocks = max(1, (rows[1].shape[0] + THREADS - 1) // THREADS)
    _MERGE[acc][blocks, THREADS](*(cuda.to_device(r) for r in rows), d_out, d_lse)
    out = _fetch(d_out_buf, rows[0].shape, "numba-cuda merge_attention_states out")
    lse = _fetch(d_lse_buf, rows[1].shape, "numba-cuda merge_attention_states lse")
    return out.reshape(shape).astype(dtype), lse.reshape(shape[:-1]).astype(dtype)


def _launch_rope_append(x, cos, sin, start, stop, rotate, cache):
    rows = x.shape[0] * x.shape[1] * (stop - start)
    blocks = max(1, (rows + THREADS - 1) // THREADS)
    _rope_append[blocks, THREADS](x, cos, sin, start, stop, rotate, cache)


def kv_cache_decode(q, k, v, prefill_len=4, rope_base=10000.0):
    q, k, v, scale, steps, cos, sin = check_decode(q, k, v, prefill_len, rope_base)
    acc = compute_dtype(q.dtype)
    d_q, d_k, d_v = cuda.to_device(widen(q)), cuda.to_device(widen(k)), cuda.to_device(widen(v))
    d_cos, d_sin = cuda.to_device(cos), cuda.to_device(sin)  # (L, D/2)
    cache_k = cuda.to_device(np.zeros(k.shape, dtype=acc))  # (B, Hkv, L, D), left to right
    cache_v = cuda.to_device(np.zeros(v.shape, dtype=acc))
    q_rot = cuda.to_device(np.zeros(q.shape, dtype=acc))
    keep = cuda.to_device(np.ones((q.shape[0], q.shape[2]), dtype=np.bool_))  # no padding
    out_shape = q.shape[:3] + (v.shape[3],)  # (B, Hq, L, Dv)
    d_out_buf, d_out = _guarded(out_shape, acc)
    lse = cuda.device_array(q.shape[:3], dtype=acc)  # (B, Hq, L), not returned
    largest = max(stop - start for start, stop in steps)
    scores = cuda.device_array((q.shape[0] * q.shape[1] * largest, DECODE_KEY_BLOCK), dtype=acc)
    for start, stop in steps:
        _launch_rope_append(d_k, d_cos, d_sin, start, stop, True, cache_k)
        _launch_rope_append(d_v, d_cos, d_sin, start, stop, False, cache_v)
        _launch_rope_append(d_q, d_cos, d_sin, start, stop, True, q_rot)
        rows = q.shape[0] * q.shape[1] * (stop - start)
        blocks = max(1, (rows + THREADS - 1) // THREADS)
        _ONLINE[acc][blocks, THREADS](q_rot[:, :, start:stop], cache_k[:, :, :stop],
                                      cache_v[:, :, :stop], keep[:, :stop], True, 0,
                                      float(scale), scores, d_out[:, :, start:stop],
                                      lse[:, :, start:stop])
    out = _fetch(d_out_buf, out_shape, "numba-cuda kv_cache_decode")
    return out.astype(q.dtype)
