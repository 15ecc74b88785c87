"""DeepSeek multi-head latent attention with a numba.cuda attention core over the latent
cache (reference: llmref.ref.mla.mla).

The weight-absorbed form, as in llmref.accel.numba_cpu.mla: every head attends over the
cached per-token latents c_kv (Rkv,) and the shared rotated key k_pe (dr,):

    s_h[t, j] = scale (q_lat_h[t] . c_kv[j] + q_pe_h[t] . k_pe[j]),   j <= t   (causal)
    o_lat_h[t] = sum_j softmax_j(s_h[t]) c_kv[j],   q_lat_h = W_UK_h q_nope_h

One thread per (batch, head, token) row walks its keys once with the online softmax (running
max m and sum l; the unnormalised latent output, held in the output row, is rescaled by
exp(m_old - m_new) when the maximum rises). Host side, in NumPy: the projections, both
RMSNorms and the absorption of W_UK, W_UV and wo; RoPE of q_pe and k_pe runs in the numba.cuda
rope kernel. float16/bfloat16 inputs are widened to float32 on the host; accumulation is
float32 (float64 for float64 inputs); the result is rounded once.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel.numba_cpu.mla import latent_attention_inputs, output_projection
from llmref.accel.numba_cuda.positions import rope
from llmref.backends import simulated

THREADS = 32 if simulated() else 128


def _make_kernel(acc):
    """The row kernel with its running max, sum and dot products in `acc` (float32/64)."""
    @cuda.jit
    def latent_attention_rows(q_lat, q_pe, c_kv, k_pe, scale, out):
        row = cuda.grid(1)
        batch, heads, length, rank = q_lat.shape
        if row >= batch * heads * length:
            return
        b = row // (heads * length)
        h = (row // length) % heads
        t = row % length
        for c in range(rank):
            out[b, h, t, c] = 0
        m = acc(-math.inf)
        total = acc(0.0)
        for j in range(t + 1):  # causal: the keys of tokens 0..t
            dot = acc(0.0)
            for c in range(rank):
                dot += q_lat[b, h, t, c] * c_kv[b, j, c]
            for r in range(k_pe.shape[2]):
                dot += q_pe[b, h, t, r] * k_pe[b, j, r]
            s = dot * acc(scale)
            m_new = max(m, s)
            rescale = math.exp(m - m_new)  # exp(-inf) = 0 on the first key
            p = math.exp(s - m_new)
            total = total * rescale + p
            for c in range(rank):
                out[b, h, t, c] = out[b, h, t, c] * rescale + p * c_kv[b, j, c]
            m = m_new
        for c in range(rank):
            out[b, h, t, c] = out[b, h, t, c] / total

    return latent_attention_rows


_KERNELS = {np.dtype(np.float32): _make_kernel(float32),
            np.dtype(np.float64): _make_kernel(float64)}


def mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads=2, d_nope=4,
        d_rope=4, rope_base=10000.0, rope_factor=1.0, original_max_position_embeddings=4096,
        mscale=0.0, mscale_all_dim=0.0, eps=1e-6, interleaved=True):
    (q_lat, q_pe, c_kv, k_pe, scale), absorbed, dtype = latent_attention_inputs(
        x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads, d_nope, d_rope,
        rope_base, rope_factor, original_max_position_embeddings, mscale, mscale_all_dim, eps,
        interleaved, rope)
    shape = q_lat.shape  # (B, H, L, Rkv)
    n = q_lat.size
    buf = guarded_host_buffer(n, q_lat.dtype)
    d_buf = cuda.to_device(buf)
    d_out = interior(d_buf, n).reshape(shape)
    rows = int(np.prod(shape[:3]))
    blocks = max(1, (rows + THREADS - 1) // THREADS)
    _KERNELS[q_lat.dtype][blocks, THREADS](cuda.to_device(q_lat), cuda.to_device(q_pe),
                                           cuda.to_device(c_kv), cuda.to_device(k_pe),
                                           float(scale), d_out)
    buf = d_buf.copy_to_host()
    check_guards(buf, n, "numba-cuda mla")
    out_lat = interior(buf, n).reshape(shape)
    return output_projection(out_lat, *absorbed).astype(dtype)
