"""Paged KV write and paged decode attention as numba.cuda kernels
(reference: llmref.ref.paged_kv).

kv_write: one thread block per new token copies its K and V rows, as raw 16-bit words, to
row slot_mapping[t] of the pools viewed as (num_blocks * block_size, Hkv * D) -- a bit-exact
copy at every dtype.

Decode: one thread block per (sequence, query head); the threads split the head dimension.
For each token j the block reduces q . k_j in shared memory, then every thread updates the
online softmax (running max m, sum l) and its own slice of the weighted sum of values.
float16/bfloat16 inputs are widened to float32 on the host; the result is rounded once.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import widen
from llmref.backends import simulated
from llmref.ref.paged_kv import kv_write_args, paged_attention_decode_args

# A warp-sized block under the simulator, where every thread is a Python thread.
THREADS = 32 if simulated() else 128


@cuda.jit
def _scatter_rows(src, slot_mapping, pool):
    """pool[slot_mapping[t], :] = src[t, :] for slot >= 0; block t, threads over the row."""
    t = cuda.blockIdx.x
    slot = slot_mapping[t]
    if slot < 0:
        return
    for w in range(cuda.threadIdx.x, src.shape[1], THREADS):
        pool[slot, w] = src[t, w]


def _write_pool(src, slot_mapping, pool, what):
    """Copy the pool into a guarded device buffer, scatter the new rows, check the guards."""
    slots, words = pool.shape[0] * pool.shape[1], pool.size * pool.itemsize // 2
    buf = guarded_host_buffer(words, np.uint16)
    interior(buf, words)[:] = pool.view(np.uint16).reshape(-1)
    d_buf = cuda.to_device(buf)
    rows = np.ascontiguousarray(src).view(np.uint16).reshape(src.shape[0], -1)  # (T, row words)
    _scatter_rows[src.shape[0], THREADS](cuda.to_device(rows), cuda.to_device(slot_mapping),
                                         interior(d_buf, words).reshape(slots, -1))
    buf = d_buf.copy_to_host()
    check_guards(buf, words, what)
    return interior(buf, words).view(pool.dtype).reshape(pool.shape)


def kv_write(key, value, slot_mapping, k_cache, v_cache):
    key, value, slot_mapping, k_cache, v_cache = kv_write_args(key, value, slot_mapping,
                                                               k_cache, v_cache)
    if key.shape[0] == 0:  # no new token: the pools unchanged
        return k_cache.copy(), v_cache.copy()
    slot_mapping = slot_mapping.astype(np.int64)
    k_out = _write_pool(key, slot_mapping, np.ascontiguousarray(k_cache), "numba-cuda kv_write k")
    v_out = _write_pool(value, slot_mapping, np.ascontiguousarray(v_cache), "numba-cuda kv_write v")
    return k_out, v_out


def _make_decode_kernel(dtype):
    @cuda.jit
    def paged_decode(q, k_cache, v_cache, block_tables, seq_lens, scale, out):
        b, h = cuda.blockIdx.y, cuda.blockIdx.x
        tid = cuda.threadIdx.x
        d = q.shape[2]
        block_size = k_cache.shape[1]
        g = h // (q.shape[1] // k_cache.shape[2])  # GQA: repeat each KV head
        partial = cuda.shared.array(THREADS, dtype)
        m = -math.inf
        l = 0.0
        acc = cuda.local.array(8, dtype)  # this thread's dims tid, tid + THREADS, ...
        for i in range(8):
            acc[i] = 0.0
        for j in range(seq_lens[b]):
            block, offset = block_tables[b, j // block_size], j % block_size
            dot = 0.0
            for e in range(tid, d, THREADS):
                dot += q[b, h, e] * k_cache[block, offset, g, e]
            partial[tid] = dot
            cuda.syncthreads()
            stride = THREADS // 2
            while stride > 0:
                if tid < stride:
                    partial[tid] += partial[tid + stride]
                cuda.syncthreads()
                stride //= 2
            s = partial[0] * scale
            cuda.syncthreads()  # everyone has read partial[0] before the next token reuses it
            m_new = max(m, s)
            correction = math.exp(m - m_new)
            p = math.exp(s - m_new)
            l = l * correction + p
            i = 0
            for e in range(tid, d, THREADS):
                acc[i] = acc[i] * correction + p * v_cache[block, offset, g, e]
                i += 1
            m = m_new
        i = 0
        for e in range(tid, d, THREADS):
            out[b, h, e] = acc[i] / l
            i += 1

    return paged_decode


_KERNELS = {}


def _decode_kernel(dtype):
    if dtype not in _KERNELS:
        _KERNELS[dtype] = _make_decode_kernel(float64 if dtype == np.float64 else float32)
    return _KERNELS[dtype]


def paged_attention_decode(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    q, k_cache, v_cache, block_tables, seq_lens, scale = paged_attention_decode_args(
        q, k_cache, v_cache, block_tables, seq_lens, scale)
    if q.shape[0] == 0:  # no sequence: an empty output
        return q.copy()
    if q.shape[2] > 8 * THREADS:
        raise NotImplementedError(f"numba-cuda paged decode holds at most {8 * THREADS} dims")
    wq, wk, wv = widen(q), widen(k_cache), widen(v_cache)
    batch, hq, d = wq.shape
    buf = guarded_host_buffer(wq.size, wq.dtype)
    d_buf = cuda.to_device(buf)
    kernel = _decode_kernel(wq.dtype)
    kernel[(hq, batch), THREADS](cuda.to_device(wq), cuda.to_device(wk), cuda.to_device(wv),
                                 cuda.to_device(block_tables.astype(np.int64)),
                                 cuda.to_device(seq_lens.astype(np.int64)), wq.dtype.type(scale),
                                 interior(d_buf, wq.size).reshape(wq.shape))
    buf = d_buf.copy_to_host()
    check_guards(buf, wq.size, "numba-cuda paged_attention_decode")
    return interior(buf, wq.size).reshape(wq.shape).astype(q.dtype)
