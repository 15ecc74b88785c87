"""Wrong MLA variants seen in the wild; each must fail its audit. They share one copy of the
naive form with the bug switched in (`_mla`)."""
import numpy as np

from llmref.ref.attention import attention_mask, attention_with_lse
from llmref.ref.mla import _rope_tables, mla_args, project_queries, rms_norm, softmax_scale
from llmref.ref.positions import rotate, yarn_mscale


def mla_rope_key_normalised(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **p):
    """RMSNorm over [c | k_pe] (weight 1 on the rope part) instead of over c only."""
    return _mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, bug="normalised", **p)


def mla_mscale_once(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **p):
    """Softmax scale (dn + dr)^-0.5 * mscale, not mscale^2 (onnxruntime mobius PR 548 class)."""
    return _mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, bug="mscale_once", **p)


def mla_scale_of_cached_width(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **p):
    """Softmax scale (Rkv + dr)^-0.5 (1/sqrt(576) in V3) instead of (dn + dr)^-0.5."""
    return _mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, bug="cached_width",
                **p)


def mla_rope_key_per_head(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **p):
    """k_pe viewed as (H, dr/H) per-head pieces, each repeated to width dr."""
    return _mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, bug="per_head", **p)


def _mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads=2, d_nope=4,
         d_rope=4, rope_base=10000.0, rope_factor=1.0, original_max_position_embeddings=4096,
         mscale=0.0, mscale_all_dim=0.0, eps=1e-6, interleaved=True, bug=""):
    w = mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads, d_nope,
                 d_rope, rope_base, eps)
    q_nope, q_pe = project_queries(w, n_heads, d_nope, eps)
    rank = w["kv_norm"].shape[0]
    kv_a = w["x"] @ w["wkv_a"]
    if bug == "normalised":
        weight = np.concatenate([w["kv_norm"], np.ones(d_rope, dtype=w["kv_norm"].dtype)])
        kv_a = rms_norm(kv_a, weight, eps)
        c_kv, k_pe = kv_a[..., :rank], kv_a[..., rank:]
    else:
        c_kv, k_pe = rms_norm(kv_a[..., :rank], w["kv_norm"], eps), kv_a[..., rank:]
    cos, sin = _rope_tables(w["positions"], d_rope, rope_base, rope_factor,
                            original_max_position_embeddings, mscale, mscale_all_dim)
    q_pe = rotate(q_pe, cos, sin, interleaved)
    k_pe = rotate(k_pe, cos, sin, interleaved)
    b, length, _ = c_kv.shape
    kv = (c_kv @ w["wkv_b"]).reshape(b, length, n_heads, -1).transpose(0, 2, 1, 3)
    k_nope, v = kv[..., :d_nope], kv[..., d_nope:]
    if bug == "per_head":
        pieces = k_pe.reshape(b, length, n_heads, d_rope // n_heads).transpose(0, 2, 1, 3)
        k_pe_heads = np.repeat(pieces, n_heads, axis=-1)  # (B, H, L, dr)
    else:
        k_pe_heads = np.broadcast_to(k_pe[:, None], (b, n_heads, length, d_rope))
    q = np.concatenate([q_nope, q_pe], axis=-1)
    k = np.concatenate([k_nope, k_pe_heads], axis=-1)
    scale = softmax_scale(d_nope, d_rope, rope_factor, mscale_all_dim)
    if bug == "mscale_once" and rope_factor > 1 and mscale_all_dim:
        scale /= yarn_mscale(rope_factor, mscale_all_dim)
    if bug == "cached_width":
        scale *= ((d_nope + d_rope) / (rank + d_rope)) ** 0.5
    mask = attention_mask(q, k, np.ones((b, length), bool), True, 0)
    heads, _ = attention_with_lse(q, k, v, mask, scale)
    return heads.transpose(0, 2, 1, 3).reshape(b, length, -1) @ w["wo"]
