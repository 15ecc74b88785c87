"""DeepSeek-V2/V3 multi-head latent attention (specs/mla.yaml): the naive form and the
weight-absorbed decode form that caches only the latent c_kv and the shared RoPE key.

Weights are (in, out) matrices applied as x @ W (nn.Linear stores W transposed).
Shapes: x (B, L, Dm); wq_a (Dm, Rq); q_norm (Rq,); wq_b (Rq, H*(dn+dr)); wkv_a (Dm, Rkv+dr);
kv_norm (Rkv,); wkv_b (Rkv, H*(dn+dv)); wo (H*dv, Dm), with dn = d_nope, dr = d_rope.
The sizes and the RoPE scaling travel together as one MlaParams; the entry points take them
as keyword arguments named as in the spec. mla_args checks both, for the reference and every
backend; absorbed_operands and absorbed_output are the host half of the absorbed form that
the backends share (their kernels do the attention over the latent cache in between).
"""
from dataclasses import dataclass

import numpy as np

from llmref.errors import InputError
from llmref.ref._attention import attention_mask, attention_with_lse
from llmref.ref.rope import rope, yarn_mscale
from llmref.validate import float_array, int_array, integer, positive

WEIGHTS = ("wq_a", "q_norm", "wq_b", "wkv_a", "kv_norm", "wkv_b", "wo")


@dataclass(frozen=True)
class MlaParams:
    """The head sizes, the RoPE scaling of q_pe and k_pe, the RMSNorm epsilon."""
    n_heads: int = 2
    d_nope: int = 4
    d_rope: int = 4
    rope_base: float = 10000.0
    rope_factor: float = 1.0  # YaRN when > 1, plain RoPE otherwise
    original_max_position_embeddings: int = 4096
    mscale: float = 0.0  # 0 = unset
    mscale_all_dim: float = 0.0  # 0 = unset
    eps: float = 1e-6
    interleaved: bool = True

    def rope_params(self) -> dict:
        """The rope spec's params for q_pe and k_pe: YaRN frequencies of width dr when
        rope_factor > 1 (with its cos/sin attention factor), plain RoPE otherwise."""
        return dict(interleaved=self.interleaved,
                    rope_type="yarn" if self.rope_factor > 1 else "default",
                    base=self.rope_base, factor=self.rope_factor,
                    original_max_position_embeddings=self.original_max_position_embeddings,
                    mscale=self.mscale, mscale_all_dim=self.mscale_all_dim)


def mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params):
    """Causal MLA, naive form: up-project the latent to per-head keys and values.

      q = RMSNorm(x wq_a) wq_b  -> per head [q_nope (dn) | q_pe (dr)],  q_pe = RoPE(q_pe)
      [c | k_pe] = x wkv_a;  c_kv = RMSNorm(c);  k_pe = RoPE(k_pe)   (ONE rope key per token,
                                                                      shared by all heads)
      [k_nope_h | v_h] = c_kv wkv_b  per head;  k_h = [k_nope_h | k_pe]
      out = (causal softmax(scale q_h . k_h) v_h, heads concatenated) wo
      scale = (dn + dr)^-0.5 * mscale(rope_factor, mscale_all_dim)^2    (YaRN; mscale = 1 when
                                                                          rope_factor <= 1)
    params: the MlaParams fields.
    """
    w, p = mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params)
    q_nope, q_pe = project_queries(w, p)  # (B, H, L, dn), (B, H, L, dr)
    c_kv, k_pe = project_latent(w, p)  # (B, L, Rkv), (B, L, dr)
    q_pe, k_pe = rotate_pe(q_pe, k_pe, w["positions"], p, rope)
    b, length, _ = c_kv.shape
    kv = c_kv @ w["wkv_b"]  # (B, L, H*(dn+dv))
    kv = kv.reshape(b, length, p.n_heads, kv.shape[-1] // p.n_heads)  # (B, L, H, dn+dv)
    kv = kv.transpose(0, 2, 1, 3)  # (B, H, L, dn+dv)
    k_nope, v = kv[..., :p.d_nope], kv[..., p.d_nope:]
    k_pe_heads = np.broadcast_to(k_pe[:, None], (b, p.n_heads, length, p.d_rope))  # shared key
    q = np.concatenate([q_nope, q_pe], axis=-1)  # (B, H, L, dn+dr)
    k = np.concatenate([k_nope, k_pe_heads], axis=-1)
    mask = attention_mask(q, k, np.ones((b, length), bool), True, 0)
    heads, _ = attention_with_lse(q, k, v, mask, softmax_scale(p))  # (B, H, L, dv)
    heads = heads.transpose(0, 2, 1, 3)  # (B, L, H, dv)
    return heads.reshape(b, length, w["wo"].shape[0]) @ w["wo"]  # (B, L, H*dv) @ wo: (B, L, Dm)


def mla_absorbed_decode(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params):
    """The same attention decoded token by token from a cache of (c_kv, rotated k_pe) only,
    Rkv + dr numbers per token, with W_UK absorbed into the query and W_UV into the output:

      q_lat_h = W_UK_h q_nope_h                         (Rkv,)
      s_h[j]  = scale (q_lat_h . c_kv[j] + q_pe_h . k_pe[j])
      out_h   = W_UV_h^T sum_j softmax(s_h)[j] c_kv[j]
    where wkv_b per head is [W_UK_h (Rkv, dn) | W_UV_h (Rkv, dv)]. Equal to mla."""
    w, p = mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params)
    q_lat, q_pe, c_kv, k_pe, w_uv = absorbed_operands(w, p, rope)
    scale = softmax_scale(p)
    latent_cache = np.zeros_like(c_kv)  # (B, L, Rkv)
    rope_cache = np.zeros_like(k_pe)  # (B, L, dr)
    out_lat = np.empty_like(q_lat)  # (B, H, L, Rkv)
    for t in range(c_kv.shape[1]):
        latent_cache[:, t], rope_cache[:, t] = c_kv[:, t], k_pe[:, t]  # append token t
        scores = scale * (np.einsum("bhc,btc->bht", q_lat[:, :, t], latent_cache[:, :t + 1])
                          + np.einsum("bhr,btr->bht", q_pe[:, :, t], rope_cache[:, :t + 1]))
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)  # (B, H, t+1)
        out_lat[:, :, t] = np.einsum("bht,btc->bhc", weights, latent_cache[:, :t + 1])
    return absorbed_output(out_lat, w_uv, w["wo"])


def project_queries(w, p):
    """q = RMSNorm(x wq_a) wq_b, split per head into (q_nope, q_pe), each (B, H, L, .)."""
    b, length, _ = w["x"].shape
    q = rms_norm(w["x"] @ w["wq_a"], w["q_norm"], p.eps) @ w["wq_b"]
    q = q.reshape(b, length, p.n_heads, q.shape[-1] // p.n_heads)  # (B, L, H, dn+dr)
    q = q.transpose(0, 2, 1, 3)  # (B, H, L, dn+dr)
    return q[..., :p.d_nope], q[..., p.d_nope:]


def project_latent(w, p):
    """[c | k_pe] = x wkv_a; the norm applies to the latent c only, never to k_pe."""
    rank = w["kv_norm"].shape[0]
    kv_a = w["x"] @ w["wkv_a"]  # (B, L, Rkv + dr)
    return rms_norm(kv_a[..., :rank], w["kv_norm"], p.eps), kv_a[..., rank:]


def rms_norm(x, weight, eps):
    """x / sqrt(mean(x^2) + eps) * weight over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rotate_pe(q_pe, k_pe, positions, p, rope_fn):
    """RoPE of q_pe (B, H, L, dr) and of the shared key k_pe (B, L, dr) with p.rope_params();
    rope_fn is the reference's rope or a backend's kernel."""
    q_pe = rope_fn(q_pe, positions, **p.rope_params())
    k_pe = rope_fn(k_pe[:, None], positions, **p.rope_params())[:, 0]  # one "head"
    return q_pe, k_pe


def softmax_scale(p):
    """(dn + dr)^-0.5, times mscale(rope_factor, mscale_all_dim)^2 under YaRN (DeepSeek's
    MLA.__init__; HF DeepseekV3Attention.scaling)."""
    scale = (p.d_nope + p.d_rope) ** -0.5
    if p.rope_factor > 1 and p.mscale_all_dim:
        scale *= yarn_mscale(p.rope_factor, p.mscale_all_dim) ** 2
    return scale


def absorbed_operands(w, p, rope_fn):
    """The absorbed form's operands, in the dtype of the weights: q_lat = W_UK q_nope
    (B, H, L, Rkv), the rotated q_pe (B, H, L, dr), the latent c_kv (B, L, Rkv), the rotated
    shared key k_pe (B, L, dr), and W_UV (Rkv, H, dv) for absorbed_output."""
    q_nope, q_pe = project_queries(w, p)
    c_kv, k_pe = project_latent(w, p)
    q_pe, k_pe = rotate_pe(q_pe, k_pe, w["positions"], p, rope_fn)
    w_kv = w["wkv_b"].reshape(c_kv.shape[-1], p.n_heads, -1)  # (Rkv, H, dn+dv)
    w_uk, w_uv = w_kv[..., :p.d_nope], w_kv[..., p.d_nope:]  # (Rkv, H, dn), (Rkv, H, dv)
    q_lat = np.einsum("bhtd,chd->bhtc", q_nope, w_uk)  # (B, H, L, Rkv)
    return q_lat, q_pe, c_kv, k_pe, w_uv


def absorbed_output(out_lat, w_uv, wo):
    """[W_UV_h^T o_lat_h for every head] wo: (B, H, L, Rkv) -> (B, L, Dm)."""
    b, _, length, _ = out_lat.shape
    heads = np.einsum("bhtc,chv->bhtv", out_lat, w_uv)  # (B, H, L, dv)
    heads = heads.transpose(0, 2, 1, 3)  # (B, L, H, dv)
    return heads.reshape(b, length, wo.shape[0]) @ wo  # (B, L, H*dv) @ wo


def mla_args(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, **params):
    """Validate every shape against x and the head sizes; returns (the arrays by name,
    MlaParams(**params)). Every backend checks through this. A batch of 0 sequences or 0
    tokens is a valid call (empty output); a width of 0 (Dm, Rq, Rkv) is an error."""
    p = MlaParams(**params)
    w = {"x": float_array("x", x, ndim=3)}
    for name, value in zip(WEIGHTS, (wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo)):
        w[name] = float_array(name, value, ndim=1 if name.endswith("_norm") else 2)
    for name in ("n_heads", "d_nope", "d_rope"):
        integer(name, getattr(p, name), low=1)
    if p.d_rope % 2:
        raise InputError(f"d_rope: must be even, got {p.d_rope}")
    positive("rope_base", p.rope_base)
    positive("eps", p.eps, allow_zero=True)
    b, length, dm = w["x"].shape
    rq, rkv = w["q_norm"].shape[0], w["kv_norm"].shape[0]
    for name, width, what in (("x", dm, "model width Dm"), ("q_norm", rq, "query rank Rq"),
                              ("kv_norm", rkv, "latent rank Rkv")):
        if width == 0:
            raise InputError(f"{name}: the {what} must be >= 1, got 0")
    heads, dn, dr = p.n_heads, p.d_nope, p.d_rope
    expect = {"wq_a": (dm, rq), "wkv_a": (dm, rkv + dr), "wq_b": (rq, heads * (dn + dr))}
    for name, shape in expect.items():
        if w[name].shape != shape:
            raise InputError(f"{name}: expected shape {shape}, got {w[name].shape}")
    if w["wkv_b"].shape[0] != rkv or w["wkv_b"].shape[1] % heads \
            or w["wkv_b"].shape[1] // heads <= dn:
        raise InputError(f"wkv_b: expected shape ({rkv}, n_heads * (d_nope + d_v)) with "
                         f"d_v >= 1, got {w['wkv_b'].shape}")
    d_v = w["wkv_b"].shape[1] // heads - dn
    if w["wo"].shape != (heads * d_v, dm):
        raise InputError(f"wo: expected shape {(heads * d_v, dm)}, got {w['wo'].shape}")
    w["positions"] = int_array("positions", positions, ndim=1, low=0)
    if w["positions"].shape[0] != length:
        raise InputError(f"positions: has {w['positions'].shape[0]} entries for {length} tokens")
    return w, p
