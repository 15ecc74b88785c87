"""DeepSeek multi-head latent attention on numba-cpu (reference: llmref.ref.mla.mla).

A whole causal call (a prefill) is computed here in the naive form, the keys and values
up-projected from the latents, because on the CPU that is the cheaper of the two exact
forms: with wkv_b split per head into [W_UK_h (Rkv, dn) | W_UV_h (Rkv, dv)],

  naive     [k_nope_h | v_h] = c_kv [W_UK_h | W_UV_h]   (one matrix product for all heads),
            s_h[t, j] = scale (q_nope_h[t] . k_nope_h[j] + q_pe_h[t] . k_pe[j]),
            out_h[t] = sum_j softmax_j(s_h[t]) v_h[j]       (head width dn + dr, value dv)
  absorbed  q_lat_h = W_UK_h q_nope_h  (Rkv,),
            s_h[t, j] = scale (q_lat_h[t] . c_kv[j] + q_pe_h[t] . k_pe[j]),
            o_lat_h[t] = sum_j softmax_j(s_h[t]) c_kv[j],   out_h = W_UV_h^T o_lat_h

are equal up to rounding. The absorbed form (numba-cuda's, and llmref.ref.mla's
mla_absorbed_decode) attends with width Rkv + dr and values of width Rkv instead of dn + dr
and dv, which pays when the latents are a cache read once per decoded token; over L queries
at once its attention costs more than the up-projection it saves (at the bench shape,
DeepSeek-V2-like: 2.2 against 1.4 GFLOP).

Checked by the reference's mla_args. Host side, on the widened weights: the reference's
project_queries, project_latent and rotate_pe (projections, both RMSNorms; q_pe and k_pe
rotated by this backend's rope kernel), the up-projection c_kv wkv_b and the output
projection (np.matmul at the compute dtype). The attention is the blocked attention of
llmref.accel.numba_cpu._attention (every head its own KV head, keys [k_nope_h | k_pe],
bottom-right causal with Lq = Lk). float16/bfloat16 inputs are widened to float32 and the
result is rounded once.
"""
import numpy as np

from llmref.accel._host import widen
from llmref.accel.numba_cpu._attention import blocked_attention
from llmref.accel.numba_cpu.rope import rope
from llmref.ref.mla import mla_args, project_latent, project_queries, rotate_pe, softmax_scale


def mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params):
    w, p = mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params)
    wide = {name: value if name == "positions" else widen(value) for name, value in w.items()}
    batch, length, _ = wide["x"].shape
    q_nope, q_pe = project_queries(wide, p)  # (B, H, L, dn), (B, H, L, dr)
    c_kv, k_pe = project_latent(wide, p)  # (B, L, Rkv), (B, L, dr)
    q_pe, k_pe = rotate_pe(q_pe, k_pe, wide["positions"], p, rope)
    acc, heads, dn = c_kv.dtype, p.n_heads, p.d_nope
    width = wide["wkv_b"].shape[1] // heads  # dn + dv
    kv = (c_kv @ wide["wkv_b"]).reshape(batch, length, heads, width)  # (B, L, H, dn + dv)
    kv = kv.transpose(0, 2, 1, 3)  # (B, H, L, dn + dv)
    q = np.concatenate([q_nope, q_pe], axis=-1)  # (B, H, L, dn + dr)
    k = np.empty((batch, heads, length, dn + p.d_rope), dtype=acc)
    k[..., :dn] = kv[..., :dn]
    k[..., dn:] = k_pe[:, None]  # the one rope key of a token, shared by every head
    v = np.ascontiguousarray(kv[..., dn:])  # (B, H, L, dv)
    out, _ = blocked_attention(q, k, v, np.ones((batch, length), dtype=bool), True, 0,
                               softmax_scale(p))  # (B, H, L, dv)
    out = out.transpose(0, 2, 1, 3).reshape(batch, length, wide["wo"].shape[0])
    return (out @ wide["wo"]).astype(w["x"].dtype, copy=False)  # (B, L, H*dv) @ wo: (B, L, Dm)
