"""DeepSeek multi-head latent attention on numba-cuda (reference: llmref.ref.mla.mla), in the
weight-absorbed form (see llmref.accel.numba_cpu.mla): every head attends over the cached
per-token latents c_kv (Rkv,) and the shared rotated key k_pe (dr,):

    s_h[t, j] = scale (q_lat_h[t] . c_kv[j] + q_pe_h[t] . k_pe[j]),   j <= t   (causal)
    o_lat_h[t] = sum_j softmax_j(s_h[t]) c_kv[j],   q_lat_h = W_UK_h q_nope_h

Checked by the reference's mla_args. Host side, the reference's absorbed_operands and
absorbed_output on the widened weights, with q_pe and k_pe rotated by the numba-cuda rope
kernel; one thread per (batch, head, token) row runs the shared row math of
llmref.accel.kernels.mla into a guarded buffer. float16/bfloat16 inputs are widened to
float32 on the host; the result is rounded once.
"""
import numpy as np
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import mla as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.accel.numba_cuda.rope import rope
from llmref.ref.mla import absorbed_operands, absorbed_output, mla_args, softmax_scale

_latent_rows = cuda.jit(device=True)(kernels.latent_rows)


@cuda.jit
def _latent_attention(q_lat, q_pe, c_kv, k_pe, scale, zero, neg_inf, out):
    _latent_rows(q_lat, q_pe, c_kv, k_pe, scale, zero, neg_inf, cuda.grid(1), cuda.gridsize(1),
                 out)


def mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params):
    w, p = mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params)
    wide = {name: value if name == "positions" else widen(value) for name, value in w.items()}
    q_lat, q_pe, c_kv, k_pe, w_uv = absorbed_operands(wide, p, rope)
    acc = q_lat.dtype
    out_lat = Guarded(q_lat.shape, acc, "numba-cuda mla")  # (B, H, L, Rkv)
    _latent_attention[grid(np.prod(q_lat.shape[:3])), THREADS](
        *(cuda.to_device(np.ascontiguousarray(a)) for a in (q_lat, q_pe, c_kv, k_pe)),
        acc.type(softmax_scale(p)), acc.type(0), acc.type(-np.inf), out_lat.device)
    return absorbed_output(out_lat.result(), w_uv, wide["wo"]).astype(w["x"].dtype)
