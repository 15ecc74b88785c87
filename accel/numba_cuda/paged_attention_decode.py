"""Paged decode attention on numba-cuda (reference: llmref.ref.paged_attention_decode).

Why this kernel is not shared with numba-cpu (llmref.accel.numba_cpu.paged_attention_decode):
on the GPU every (sequence, query head) gets a thread block whose THREADS threads split the
head dimension: for each token j the block reduces q . k_j in shared memory, then every
thread updates the online softmax (running max m, sum l) and its own slice of the weighted
sum of values. The CPU backend instead walks (sequence, KV head) pairs serially over blocks
for all heads of a GQA group at once. Both are the same online softmax, in the order each
machine reads memory best; the cooperative reduction (shared memory, syncthreads) has no
numba-cpu counterpart, so there is no accel.kernels module for this family.

Checked by the reference's paged_attention_decode_args; float16/bfloat16 inputs are widened
to float32 on the host; the result is rounded once, from a guarded buffer.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from llmref.accel._host import widen
from llmref.accel.numba_cuda._launch import THREADS, Guarded
from llmref.ref.paged_attention_decode import paged_attention_decode_args

SLICES = 8  # head-dimension elements per thread: head_dim <= SLICES * THREADS


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
        acc = cuda.local.array(SLICES, dtype)  # this thread's dims tid, tid + THREADS, ...
        for i in range(SLICES):
            acc[i] = 0.0
        for j in range(seq_lens[b]):
            block, offset = block_tables[b, j // block_size], j % block_size
            dot = 0.0
            for e in range(tid, d, THREADS):
                dot += q[b, h, e] * k_cache[block, offset, g, e]
            partial[tid] = dot
            cuda.syncthreads()
            # the block's tree reduction of the partial dots (the shape norms and softmax use)
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
    if q.shape[2] > SLICES * THREADS:
        raise NotImplementedError(f"numba-cuda paged decode holds at most {SLICES * THREADS} dims")
    wq, wk, wv = widen(q), widen(k_cache), widen(v_cache)
    batch, hq, _ = wq.shape
    out = Guarded(wq.shape, wq.dtype, "numba-cuda paged_attention_decode")
    _decode_kernel(wq.dtype)[(hq, batch), THREADS](
        cuda.to_device(wq), cuda.to_device(wk), cuda.to_device(wv),
        cuda.to_device(block_tables.astype(np.int64)), cuda.to_device(seq_lens.astype(np.int64)),
        wq.dtype.type(scale), out.device)
    return out.result().astype(q.dtype)
