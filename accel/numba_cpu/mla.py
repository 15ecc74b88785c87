"""DeepSeek multi-head latent attention with a numba.njit attention core over the latent
cache (reference: llmref.ref.mla.mla).

This backend computes the weight-absorbed form, in which every head attends over the cache
of per-token latents c_kv (Rkv,) and the shared rotated key k_pe (dr,) directly:

    q_lat_h = W_UK_h q_nope_h                                   (Rkv,)  per head and token
    s_h[t, j] = scale (q_lat_h[t] . c_kv[j] + q_pe_h[t] . k_pe[j]),   j <= t   (causal)
    o_lat_h[t] = sum_j softmax_j(s_h[t]) c_kv[j]                (Rkv,)
    out = [W_UV_1^T o_lat_1 | ... | W_UV_H^T o_lat_H] wo
with wkv_b split per head into [W_UK_h (Rkv, dn) | W_UV_h (Rkv, dv)]. It equals the naive
form of the reference up to rounding.

Host side, in NumPy: the projections (x wq_a, wq_b, wkv_a), both RMSNorms, the absorption of
W_UK into the query and of W_UV and wo into the output. RoPE of q_pe and k_pe runs in the
backend's rope kernel; the attention core over the latent cache runs in the kernel below.
float16/bfloat16 inputs are widened to float32 on the host and the result is rounded once.
"""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.numba_cpu.positions import rope
from llmref.ref.mla import mla_args, softmax_scale


@numba.njit(cache=True)
def _latent_attention_rows(q_lat, q_pe, c_kv, k_pe, scale, out):
    """out[b, h, t] = sum_{j <= t} softmax_j(s[b, h, t, :]) c_kv[b, j],
       s[b, h, t, j] = scale (q_lat[b, h, t] . c_kv[b, j] + q_pe[b, h, t] . k_pe[b, j])."""
    batch, heads, length, rank = q_lat.shape
    scores = np.empty(length, dtype=out.dtype)
    for b in range(batch):
        for h in range(heads):
            for t in range(length):
                m = -np.inf
                for j in range(t + 1):
                    dot = 0.0
                    for c in range(rank):
                        dot += q_lat[b, h, t, c] * c_kv[b, j, c]
                    for r in range(k_pe.shape[2]):
                        dot += q_pe[b, h, t, r] * k_pe[b, j, r]
                    scores[j] = dot * scale
                    m = max(m, scores[j])
                out[b, h, t, :] = 0.0
                total = 0.0
                for j in range(t + 1):
                    p = math.exp(scores[j] - m)
                    total += p
                    for c in range(rank):
                        out[b, h, t, c] += p * c_kv[b, j, c]
                for c in range(rank):
                    out[b, h, t, c] /= total


def rms_norm(z, weight, eps):
    """z / sqrt(mean(z^2) + eps) * weight over the last axis."""
    return z / np.sqrt(np.mean(z * z, axis=-1, keepdims=True) + z.dtype.type(eps)) * weight


def latent_attention_inputs(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo,
                            n_heads, d_nope, d_rope, rope_base, rope_factor,
                            original_max_position_embeddings, mscale, mscale_all_dim, eps,
                            interleaved, rope_fn):
    """Validate, project and rotate on the host; returns the kernel's inputs
    (q_lat (B, H, L, Rkv), q_pe (B, H, L, dr), c_kv (B, L, Rkv), k_pe (B, L, dr), scale)
    and the output absorption (W_UV (Rkv, H, dv), wo (H*dv, Dm)), all in the compute dtype,
    and the dtype of x. rope_fn is the backend's rope(x, positions, interleaved, rope_type=..., **scaling)."""
    w = mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads, d_nope,
                 d_rope, rope_base, eps)
    dtype = w["x"].dtype
    w = {name: widen(value) if name != "positions" else value for name, value in w.items()}
    b, length, _ = w["x"].shape
    rank = w["kv_norm"].shape[0]
    q = rms_norm(w["x"] @ w["wq_a"], w["q_norm"], eps) @ w["wq_b"]  # (B, L, H*(dn+dr))
    q = q.reshape(b, length, n_heads, q.shape[-1] // n_heads)  # (B, L, H, dn+dr)
    q = q.transpose(0, 2, 1, 3)  # (B, H, L, dn+dr)
    q_nope, q_pe = q[..., :d_nope], np.ascontiguousarray(q[..., d_nope:])
    kv_a = w["x"] @ w["wkv_a"]  # (B, L, Rkv + dr)
    c_kv = np.ascontiguousarray(rms_norm(kv_a[..., :rank], w["kv_norm"], eps))  # latent only
    k_pe = np.ascontiguousarray(kv_a[..., None, rank:].transpose(0, 2, 1, 3))  # (B, 1, L, dr)
    scaling = dict(base=float(rope_base))
    rope_type = "default"
    if rope_factor > 1:
        rope_type = "yarn"
        scaling.update(factor=float(rope_factor), mscale=mscale, mscale_all_dim=mscale_all_dim,
                       original_max_position_embeddings=original_max_position_embeddings)
    q_pe = rope_fn(q_pe, w["positions"], interleaved, rope_type=rope_type, **scaling)
    k_pe = rope_fn(k_pe, w["positions"], interleaved, rope_type=rope_type, **scaling)[:, 0]
    w_kv = w["wkv_b"].reshape(rank, n_heads, -1)  # (Rkv, H, dn+dv)
    w_uk, w_uv = w_kv[..., :d_nope], w_kv[..., d_nope:]  # (Rkv, H, dn), (Rkv, H, dv)
    q_lat = np.ascontiguousarray(np.einsum("bhtd,chd->bhtc", q_nope, w_uk))  # (B, H, L, Rkv)
    scale = softmax_scale(d_nope, d_rope, rope_factor, mscale_all_dim)
    return (q_lat, q_pe, c_kv, np.ascontiguousarray(k_pe), scale), (w_uv, w["wo"]), dtype


def output_projection(out_lat, w_uv, wo):
    """[W_UV_h^T o_lat_h for every head] wo: (B, H, L, Rkv) -> (B, L, Dm)."""
    b, _, length, _ = out_lat.shape
    heads = np.einsum("bhtc,chv->bhtv", out_lat, w_uv)  # (B, H, L, dv)
    heads = heads.transpose(0, 2, 1, 3)  # (B, L, H, dv)
    return heads.reshape(b, length, wo.shape[0]) @ wo  # (B, L, H*dv) @ wo


def mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads=2, d_nope=4,
        d_rope=4, rope_base=10000.0, rope_factor=1.0, original_max_position_embeddings=4096,
        mscale=0.0, mscale_all_dim=0.0, eps=1e-6, interleaved=True):
    (q_lat, q_pe, c_kv, k_pe, scale), absorbed, dtype = latent_attention_inputs(
        x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads, d_nope, d_rope,
        rope_base, rope_factor, original_max_position_embeddings, mscale, mscale_all_dim, eps,
        interleaved, rope)
    out_lat = np.empty_like(q_lat)  # (B, H, L, Rkv)
    _latent_attention_rows(q_lat, q_pe, c_kv, k_pe, float(scale), out_lat)
    return output_projection(out_lat, *absorbed).astype(dtype)
