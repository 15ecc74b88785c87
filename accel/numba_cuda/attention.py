"""Scaled dot-product attention as a numba.cuda kernel: one thread per query row.

Each thread walks the keys its masks leave in one pass with the online softmax (running
max m, running sum l, unnormalised output o accumulated in the output row, rescaled by
exp(m_old - m_new) when the maximum rises), then divides by l. float16/bfloat16 inputs are
widened to float32 on the host; accumulation is float32 (float64 for float64 inputs).
"""
import math

import numpy as np
from numba import cuda, float32, float64

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import compute_dtype, widen
from llmref.backends import simulated
from llmref.ref.attention import sdpa_args

THREADS = 32 if simulated() else 128


def _make_kernel(acc):
    """The row kernel with its running max, sums and dot products in `acc` (float32/64)."""
    @cuda.jit
    def sdpa_rows(q, k, v, keep_key, causal, window, scale, out):
        row = cuda.grid(1)
        batch, n_q_heads, len_q, dim = q.shape
        if row >= batch * n_q_heads * len_q:
            return
        b = row // (n_q_heads * len_q)
        h = (row // len_q) % n_q_heads
        i = row % len_q
        kv_head = h // (n_q_heads // k.shape[1])
        len_k = k.shape[2]
        position = i + len_k - len_q  # bottom-right aligned absolute position
        hi = min(position, len_k - 1) if causal else len_k - 1
        lo = max(position - window + 1, 0) if window > 0 else 0
        for d in range(v.shape[3]):
            out[b, h, i, d] = 0
        m = acc(-math.inf)
        total = acc(0.0)
        for j in range(lo, hi + 1):
            if keep_key[b, j]:
                dot = acc(0.0)
                for d in range(dim):
                    dot += q[b, h, i, d] * k[b, kv_head, j, d]
                s = dot * acc(scale)
                m_new = max(m, s)
                rescale = math.exp(m - m_new)  # exp(-inf) = 0 on the first key
                p = math.exp(s - m_new)
                total = total * rescale + p
                for d in range(v.shape[3]):
                    out[b, h, i, d] = out[b, h, i, d] * rescale + p * v[b, kv_head, j, d]
                m = m_new
        if total > 0:
            for d in range(v.shape[3]):
                out[b, h, i, d] = out[b, h, i, d] / total

    return sdpa_rows


_KERNELS = {np.dtype(np.float32): _make_kernel(float32),
            np.dtype(np.float64): _make_kernel(float64)}


def sdpa(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    shape = q.shape[:3] + (v.shape[3],)  # (B, Hq, Lq, Dv)
    n = int(np.prod(shape))
    buf = guarded_host_buffer(n, compute_dtype(q.dtype))
    d_buf = cuda.to_device(buf)
    d_out = interior(d_buf, n).reshape(shape)
    rows = int(np.prod(q.shape[:3]))
    blocks = max(1, (rows + THREADS - 1) // THREADS)
    kernel = _KERNELS[compute_dtype(q.dtype)]
    kernel[blocks, THREADS](cuda.to_device(widen(q)), cuda.to_device(widen(k)),
                            cuda.to_device(widen(v)),
                            cuda.to_device(np.ascontiguousarray(key_padding_mask)),
                            bool(causal), int(window), float(scale), d_out)
    buf = d_buf.copy_to_host()
    check_guards(buf, n, "numba-cuda sdpa")
    return interior(buf, n).reshape(shape).astype(q.dtype)
