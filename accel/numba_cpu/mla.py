"""DeepSeek multi-head latent attention on numba-cpu (reference: llmref.ref.mla.mla), in the
weight-absorbed form, in which every head attends over the cache of per-token latents c_kv
(Rkv,) and the shared rotated key k_pe (dr,) directly:

    q_lat_h = W_UK_h q_nope_h                                   (Rkv,)  per head and token
    s_h[t, j] = scale (q_lat_h[t] . c_kv[j] + q_pe_h[t] . k_pe[j]),   j <= t   (causal)
    o_lat_h[t] = sum_j softmax_j(s_h[t]) c_kv[j]                (Rkv,)
    out = [W_UV_1^T o_lat_1 | ... | W_UV_H^T o_lat_H] wo
with wkv_b split per head into [W_UK_h (Rkv, dn) | W_UV_h (Rkv, dv)]. It equals the naive
form of the reference up to rounding.

Checked by the reference's mla_args. Host side, the reference's absorbed_operands and
absorbed_output on the widened weights (projections, both RMSNorms, the absorptions), with
q_pe and k_pe rotated by this backend's rope kernel; the attention core over the latent
cache is the shared row math of llmref.accel.kernels.mla. float16/bfloat16 inputs are
widened to float32 and the result is rounded once.
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import mla as kernels
from llmref.accel.numba_cpu.rope import rope
from llmref.ref.mla import absorbed_operands, absorbed_output, mla_args, softmax_scale

_latent_rows = numba.njit(cache=True)(kernels.latent_rows)


def mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params):
    w, p = mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params)
    wide = {name: value if name == "positions" else widen(value) for name, value in w.items()}
    q_lat, q_pe, c_kv, k_pe, w_uv = (np.ascontiguousarray(a)
                                     for a in absorbed_operands(wide, p, rope))
    acc = q_lat.dtype
    out_lat = np.empty_like(q_lat)  # (B, H, L, Rkv)
    _latent_rows(q_lat, q_pe, c_kv, k_pe, acc.type(softmax_scale(p)), acc.type(0),
                 acc.type(-np.inf), 0, 1, out_lat)
    return absorbed_output(out_lat, w_uv, wide["wo"]).astype(w["x"].dtype)
