"""Wrong MLA variants seen in the wild; each must fail its audit. They share one copy of the
naive form with the bug switched in (`_mla`)."""
import numpy as np

from llmref.ref._attention import attention_mask, attention_with_lse
from llmref.ref.mla import mla_args, project_queries, rms_norm, rotate_pe, softmax_scale
from llmref.ref.rope import rope, yarn_mscale


def mla_rope_key_normalised(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **p):
    """RMSNorm over [c | k_pe] (weight 1 on the rope part) instead of over c only."""
    return _mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, "normalised", p)


def mla_mscale_once(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **p):
    """Softmax scale (dn + dr)^-0.5 * mscale, not mscale^2 (onnxruntime mobius PR 548 class)."""
    return _mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, "mscale_once", p)


def mla_scale_of_cached_width(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **p):
    """Softmax scale (Rkv + dr)^-0.5 (1/sqrt(576) in V3) instead of (dn + dr)^-0.5."""
    return _mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, "cached_width", p)


def mla_rope_key_per_head(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **p):
    """k_pe viewed as (H, dr/H) per-head pieces, each repeated to width dr."""
    return _mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, "per_head", p)


def _mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, bug, params):
    w, p = mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params)
    q_nope, q_pe = project_queries(w, p)
    rank = w["kv_norm"].shape[0]
    kv_a = w["x"] @ w["wkv_a"]
    if bug == "normalised":
        weight = np.concatenate([w["kv_norm"], np.ones(p.d_rope, dtype=w["kv_norm"].dtype)])
        kv_a = rms_norm(kv_a, weight, p.eps)
        c_kv, k_pe = kv_a[..., :rank], kv_a[..., rank:]
    else:
        c_kv, k_pe = rms_norm(kv_a[..., :rank], w["kv_norm"], p.eps), kv_a[..., rank:]
    q_pe, k_pe = rotate_pe(q_pe, k_pe, w["positions"], p, rope)
    b, length, _ = c_kv.shape
    kv = (c_kv @ w["wkv_b"]).reshape(b, length, p.n_heads, -1).transpose(0, 2, 1, 3)
    k_nope, v = kv[..., :p.d_nope], kv[..., p.d_nope:]
    if bug == "per_head":
        pieces = k_pe.reshape(b, length, p.n_heads, p.d_rope // p.n_heads).transpose(0, 2, 1, 3)
        k_pe_heads = np.repeat(pieces, p.n_heads, axis=-1)  # (B, H, L, dr)
    else:
        k_pe_heads = np.broadcast_to(k_pe[:, None], (b, p.n_heads, length, p.d_rope))
    q = np.concatenate([q_nope, q_pe], axis=-1)
    k = np.concatenate([k_nope, k_pe_heads], axis=-1)
    scale = softmax_scale(p)
    if bug == "mscale_once" and p.rope_factor > 1 and p.mscale_all_dim:
        scale /= yarn_mscale(p.rope_factor, p.mscale_all_dim)
    if bug == "cached_width":
        scale *= ((p.d_nope + p.d_rope) / (rank + p.d_rope)) ** 0.5
    mask = attention_mask(q, k, np.ones((b, length), bool), True, 0)
    heads, _ = attention_with_lse(q, k, v, mask, scale)
    return heads.transpose(0, 2, 1, 3).reshape(b, length, -1) @ w["wo"]
