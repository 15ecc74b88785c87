"""DeepSeek-V2/V3 multi-head latent attention (specs/mla.yaml): the naive form and the
weight-absorbed decode form that caches only the latent c_kv and the shared RoPE key.

Weights are (in, out) matrices applied as x @ W (nn.Linear stores W transposed).
Shapes: x (B, L, Dm); wq_a (Dm, Rq); q_norm (Rq,); wq_b (Rq, H*(dn+dr)); wkv_a (Dm, Rkv+dr);
kv_norm (Rkv,); wkv_b (Rkv, H*(dn+dv)); wo (H*dv, Dm), with dn = d_nope, dr = d_rope.
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref.attention import attention_mask, attention_with_lse
from llmref.ref.positions import rope_cos_sin, rope_inv_freq, rotate, yarn_mscale
from llmref.validate import float_array, int_array, positive


def mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads=2, d_nope=4,
        d_rope=4, rope_base=10000.0, rope_factor=1.0, original_max_position_embeddings=4096,
        mscale=0.0, mscale_all_dim=0.0, eps=1e-6, interleaved=True):
    """Causal MLA, naive form: up-project the latent to per-head keys and values.

      q = RMSNorm(x wq_a) wq_b  -> per head [q_nope (dn) | q_pe (dr)],  q_pe = RoPE(q_pe)
      [c | k_pe] = x wkv_a;  c_kv = RMSNorm(c);  k_pe = RoPE(k_pe)   (ONE rope key per token,
                                                                      shared by all heads)
      [k_nope_h | v_h] = c_kv wkv_b  per head;  k_h = [k_nope_h | k_pe]
      out = (causal softmax(scale q_h . k_h) v_h, heads concatenated) wo
      scale = (dn + dr)^-0.5 * mscale(rope_factor, mscale_all_dim)^2    (YaRN; mscale = 1 when
                                                                          rope_factor <= 1)
    """
    w = mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads, d_nope,
                 d_rope, rope_base, eps)
    q_nope, q_pe = project_queries(w, n_heads, d_nope, eps)  # (B, H, L, dn), (B, H, L, dr)
    c_kv, k_pe = project_latent(w, eps)  # (B, L, Rkv), (B, L, dr)
    cos, sin = _rope_tables(w["positions"], d_rope, rope_base, rope_factor,
                            original_max_position_embeddings, mscale, mscale_all_dim)
    q_pe = rotate(q_pe, cos, sin, interleaved)
    k_pe = rotate(k_pe, cos, sin, interleaved)
    b, length, _ = c_kv.shape
    kv = c_kv @ w["wkv_b"]  # (B, L, H*(dn+dv))
    kv = kv.reshape(b, length, n_heads, kv.shape[-1] // n_heads)  # (B, L, H, dn+dv)
    kv = kv.transpose(0, 2, 1, 3)  # (B, H, L, dn+dv)
    k_nope, v = kv[..., :d_nope], kv[..., d_nope:]
    k_pe_heads = np.broadcast_to(k_pe[:, None], (b, n_heads, length, d_rope))  # shared key
    q = np.concatenate([q_nope, q_pe], axis=-1)  # (B, H, L, dn+dr)
    k = np.concatenate([k_nope, k_pe_heads], axis=-1)
    mask = attention_mask(q, k, np.ones((b, length), bool), True, 0)
    scale = softmax_scale(d_nope, d_rope, rope_factor, mscale_all_dim)
    heads, _ = attention_with_lse(q, k, v, mask, scale)  # (B, H, L, dv)
    heads = heads.transpose(0, 2, 1, 3)  # (B, L, H, dv)
    return heads.reshape(b, length, w["wo"].shape[0]) @ w["wo"]  # (B, L, H*dv) @ wo: (B, L, Dm)


def mla_absorbed_decode(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo,
                        n_heads=2, d_nope=4, d_rope=4, rope_base=10000.0, rope_factor=1.0,
                        original_max_position_embeddings=4096, mscale=0.0, mscale_all_dim=0.0,
                        eps=1e-6, interleaved=True):
    """The same attention decoded token by token from a cache of (c_kv, rotated k_pe) only,
    Rkv + dr numbers per token, with W_UK absorbed into the query and W_UV into the output:

      q_lat_h = W_UK_h q_nope_h                         (Rkv,)
      s_h[j]  = scale (q_lat_h . c_kv[j] + q_pe_h . k_pe[j])
      out_h   = W_UV_h^T sum_j softmax(s_h)[j] c_kv[j]
    where wkv_b per head is [W_UK_h (Rkv, dn) | W_UV_h (Rkv, dv)]. Equal to mla."""
    w = mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads, d_nope,
                 d_rope, rope_base, eps)
    q_nope, q_pe = project_queries(w, n_heads, d_nope, eps)  # (B, H, L, dn), (B, H, L, dr)
    c_kv, k_pe = project_latent(w, eps)  # (B, L, Rkv), (B, L, dr)
    cos, sin = _rope_tables(w["positions"], d_rope, rope_base, rope_factor,
                            original_max_position_embeddings, mscale, mscale_all_dim)
    q_pe = rotate(q_pe, cos, sin, interleaved)
    b, length, rank = c_kv.shape
    w_kv = w["wkv_b"].reshape(rank, n_heads, -1)  # (Rkv, H, dn+dv)
    w_uk, w_uv = w_kv[..., :d_nope], w_kv[..., d_nope:]  # (Rkv, H, dn), (Rkv, H, dv)
    scale = softmax_scale(d_nope, d_rope, rope_factor, mscale_all_dim)
    latent_cache = np.zeros_like(c_kv)  # (B, L, Rkv)
    rope_cache = np.zeros_like(k_pe)  # (B, L, dr)
    outputs = []
    for t in range(length):
        latent_cache[:, t] = c_kv[:, t]
        rope_cache[:, t] = rotate(k_pe[:, t], cos[t], sin[t], interleaved)
        q_lat = np.einsum("bhd,chd->bhc", q_nope[:, :, t], w_uk)  # (B, H, Rkv)
        scores = scale * (np.einsum("bhc,btc->bht", q_lat, latent_cache[:, :t + 1])
                          + np.einsum("bhr,btr->bht", q_pe[:, :, t], rope_cache[:, :t + 1]))
        p = np.exp(scores - scores.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)  # (B, H, t+1)
        out_lat = np.einsum("bht,btc->bhc", p, latent_cache[:, :t + 1])  # (B, H, Rkv)
        outputs.append(np.einsum("bhc,chv->bhv", out_lat, w_uv).reshape(b, -1))  # (B, H*dv)
    return np.stack(outputs, axis=1) @ w["wo"]  # (B, L, Dm)


def project_queries(w, n_heads, d_nope, eps):
    """q = RMSNorm(x wq_a) wq_b, split per head into (q_nope, q_pe), each (B, H, L, .)."""
    b, length, _ = w["x"].shape
    q = rms_norm(w["x"] @ w["wq_a"], w["q_norm"], eps) @ w["wq_b"]
    q = q.reshape(b, length, n_heads, q.shape[-1] // n_heads)  # (B, L, H, dn+dr)
    q = q.transpose(0, 2, 1, 3)  # (B, H, L, dn+dr)
    return q[..., :d_nope], q[..., d_nope:]


def project_latent(w, eps):
    """[c | k_pe] = x wkv_a; the norm applies to the latent c only, never to k_pe."""
    rank = w["kv_norm"].shape[0]
    kv_a = w["x"] @ w["wkv_a"]  # (B, L, Rkv + dr)
    return rms_norm(kv_a[..., :rank], w["kv_norm"], eps), kv_a[..., rank:]


def rms_norm(x, weight, eps):
    """x / sqrt(mean(x^2) + eps) * weight over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def softmax_scale(d_nope, d_rope, rope_factor, mscale_all_dim):
    """(dn + dr)^-0.5, times mscale(rope_factor, mscale_all_dim)^2 under YaRN (DeepSeek's
    MLA.__init__; HF DeepseekV3Attention.scaling)."""
    scale = (d_nope + d_rope) ** -0.5
    if rope_factor > 1 and mscale_all_dim:
        scale *= yarn_mscale(rope_factor, mscale_all_dim) ** 2
    return scale


def _rope_tables(positions, d_rope, base, factor, original_len, mscale, mscale_all_dim):
    """cos, sin (L, dr/2) of the YaRN frequencies (plain RoPE when factor <= 1)."""
    rope_type = "yarn" if factor > 1 else "default"
    inv_freq, attention_factor = rope_inv_freq(d_rope, rope_type, base, factor, original_len,
                                               mscale=mscale, mscale_all_dim=mscale_all_dim)
    return rope_cos_sin(positions, inv_freq, attention_factor[0])


def mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads, d_nope,
             d_rope, rope_base, eps):
    """Validate every shape against x and the head sizes; returns the arrays by name. Every
    backend checks through this. A batch of 0 sequences or 0 tokens is a valid call (empty
    output); a width of 0 (Dm, Rq, Rkv) is an error."""
    w = {"x": float_array("x", x, ndim=3)}
    for name, value in (("wq_a", wq_a), ("wq_b", wq_b), ("wkv_a", wkv_a), ("wkv_b", wkv_b),
                        ("wo", wo)):
        w[name] = float_array(name, value, ndim=2)
    for name, value in (("q_norm", q_norm), ("kv_norm", kv_norm)):
        w[name] = float_array(name, value, ndim=1)
    for name, value in (("n_heads", n_heads), ("d_nope", d_nope), ("d_rope", d_rope)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name}: must be an integer >= 1, got {value!r}")
    if d_rope % 2:
        raise InputError(f"d_rope: must be even, got {d_rope}")
    positive("rope_base", rope_base)
    positive("eps", eps, allow_zero=True)
    b, length, dm = w["x"].shape
    rq, rkv = w["q_norm"].shape[0], w["kv_norm"].shape[0]
    for name, width, what in (("x", dm, "model width Dm"), ("q_norm", rq, "query rank Rq"),
                              ("kv_norm", rkv, "latent rank Rkv")):
        if width == 0:
            raise InputError(f"{name}: the {what} must be >= 1, got 0")
    expect = {"wq_a": (dm, rq), "wkv_a": (dm, rkv + d_rope)}
    for name, shape in expect.items():
        if w[name].shape != shape:
            raise InputError(f"{name}: expected shape {shape}, got {w[name].shape}")
    if w["wq_b"].shape != (rq, n_heads * (d_nope + d_rope)):
        raise InputError(f"wq_b: expected shape {(rq, n_heads * (d_nope + d_rope))}, "
                         f"got {w['wq_b'].shape}")
    if w["wkv_b"].shape[0] != rkv or w["wkv_b"].shape[1] % n_heads \
            or w["wkv_b"].shape[1] // n_heads <= d_nope:
        raise InputError(f"wkv_b: expected shape ({rkv}, n_heads * (d_nope + d_v)) with "
                         f"d_v >= 1, got {w['wkv_b'].shape}")
    d_v = w["wkv_b"].shape[1] // n_heads - d_nope
    if w["wo"].shape != (n_heads * d_v, dm):
        raise InputError(f"wo: expected shape {(n_heads * d_v, dm)}, got {w['wo'].shape}")
    w["positions"] = int_array("positions", positions, ndim=1, low=0)
    if w["positions"].shape[0] != length:
        raise InputError(f"positions: has {w['positions'].shape[0]} entries for {length} tokens")
    return w
