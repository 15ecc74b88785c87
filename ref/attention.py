"""Scaled dot-product attention, its online (blockwise) form, merging of partial states, and
decoding with a contiguous KV cache (specs/sdpa.yaml, online_attention.yaml,
merge_attention_states.yaml, kv_cache_decode.yaml).

Layout: q (B, Hq, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv). Query head h reads KV head
h // (Hq / Hkv) (MHA: Hkv = Hq; MQA: Hkv = 1; GQA in between), i.e. every KV head is
repeated (repeat_interleave) for a contiguous group of query heads, never tiled.

Masking, all combined with AND:
  causal          bottom-right aligned: query i sits at absolute position i + Lk - Lq and sees
                  keys j <= i + Lk - Lq (flash-attn >= 2.1; torch's is_causal is top-left)
  window W > 0    keys j > i + Lk - Lq - W: exactly W keys including the current one
  key_padding     key j of batch b is kept where key_padding_mask[b, j] is True
A query row with no key left has output 0 and log-sum-exp -inf (flash-attn, ONNX Attention).
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref.positions import rope_cos_sin, rope_inv_freq, rotate
from llmref.validate import float_array, positive


def sdpa(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """out[b, h, i] = sum_j softmax_j(s[b, h, i, :]) v[b, h // G, j],  G = Hq / Hkv
       s[b, h, i, j] = scale * q[b, h, i] . k[b, h // G, j]   (-inf where masked)
    scale 0 means 1/sqrt(D). Fully masked rows give 0."""
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    out, _ = attention_with_lse(q, k, v, attention_mask(q, k, key_padding_mask, causal, window),
                                scale)
    return out


def attention_with_lse(q, k, v, mask, scale):
    """(out, lse) of masked attention; lse[b, h, i] = log sum_j exp(s[b, h, i, j])."""
    k, v = repeat_kv(k, q.shape[1]), repeat_kv(v, q.shape[1])  # (B, Hq, Lk, D)
    scores = scale * (q @ np.swapaxes(k, -1, -2))  # (B, Hq, Lq, Lk)
    scores = np.where(mask, scores, -np.inf)
    m = scores.max(axis=-1, keepdims=True, initial=-np.inf)  # (B, Hq, Lq, 1); -inf for Lk = 0
    m = np.where(np.isfinite(m), m, 0)  # fully masked row: every exp(-inf) is 0
    p = np.exp(scores - m)
    denom = p.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(denom > 0, (p @ v) / denom, 0)
        lse = np.where(denom[..., 0] > 0, m[..., 0] + np.log(denom[..., 0]), -np.inf)
    return out.astype(q.dtype), lse.astype(q.dtype)


def repeat_kv(x, n_query_heads):
    """(B, Hkv, L, D) -> (B, Hq, L, D): KV head j serves query heads j*G .. j*G + G-1."""
    group = n_query_heads // x.shape[1]
    return np.repeat(x, group, axis=1)  # repeat_interleave, not tile


def attention_mask(q, k, key_padding_mask, causal, window):
    """Boolean (B, 1, Lq, Lk), True where query i may attend key j."""
    lq, lk = q.shape[2], k.shape[2]
    i = np.arange(lq)[:, None] + (lk - lq)  # absolute position of each query (bottom-right)
    j = np.arange(lk)[None, :]
    keep = np.ones((lq, lk), dtype=bool)
    if causal:
        keep &= j <= i
    if window > 0:
        keep &= j > i - window
    return keep[None, None] & key_padding_mask[:, None, None, :]  # (B, 1, Lq, Lk)


def sdpa_args(q, k, v, key_padding_mask, window, scale):
    """Validate shapes and head counts; returns the arrays and the resolved scale. Every
    backend of sdpa, online_attention and kv_cache_decode checks through this.

    Zero sizes: a batch of 0 sequences, 0 queries or 0 keys is a valid call (empty output,
    or rows with no key: 0); 0 query heads, 0 KV heads or a head width of 0 is an error."""
    q = float_array("q", q, ndim=4)
    k = float_array("k", k, ndim=4)
    v = float_array("v", v, ndim=4)
    b, hq, _, d = q.shape
    if hq == 0 or d == 0:
        raise InputError(f"q: needs at least one head of width >= 1, got shape {q.shape}")
    if k.shape[0] != b:
        raise InputError(f"k: batch {k.shape[0]} differs from q's batch {b}")
    if k.shape[3] != d:
        raise InputError(f"k: head dim {k.shape[3]} differs from q's head dim {d}")
    if k.shape[1] == 0 or hq % k.shape[1]:
        raise InputError(f"k: {k.shape[1]} KV heads do not divide {hq} query heads")
    if v.shape[:3] != k.shape[:3]:
        raise InputError(f"v: shape {v.shape} does not match k's (B, Hkv, Lk) {k.shape[:3]}")
    if v.shape[3] == 0:
        raise InputError(f"v: value width must be >= 1, got shape {v.shape}")
    if key_padding_mask is None:  # no padding: every key is kept
        key_padding_mask = np.ones((b, k.shape[2]), dtype=bool)
    key_padding_mask = np.asarray(key_padding_mask)
    if key_padding_mask.dtype != np.bool_:
        raise InputError(f"key_padding_mask: expected a bool array, got {key_padding_mask.dtype}")
    if key_padding_mask.shape != (b, k.shape[2]):
        raise InputError(f"key_padding_mask: expected shape {(b, k.shape[2])}, "
                         f"got {key_padding_mask.shape}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise InputError(f"window: must be an integer >= 0 (0 = no window), got {window!r}")
    scale = positive("scale", 0.0 if scale is None else scale, allow_zero=True)
    return q, k, v, key_padding_mask, float(1.0 / np.sqrt(d) if scale == 0 else scale)


def online_attention_args(q, k, v, key_padding_mask, window, scale, block_size):
    """sdpa_args plus block_size, an integer >= 1; returns sdpa_args' values and block_size."""
    checked = sdpa_args(q, k, v, key_padding_mask, window, scale)
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) \
            or block_size < 1:
        raise InputError(f"block_size: must be an integer >= 1, got {block_size!r}")
    return checked + (int(block_size),)


def online_attention(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0, block_size=4):
    """Flash-style attention: one pass over key blocks of `block_size` keeping, per query row,
    the running max m, running sum l and unnormalised output o:

      m' = max(m, max_j s_j);  l' = l e^(m - m') + sum_j e^(s_j - m');
      o' = o e^(m - m') + sum_j e^(s_j - m') v_j;   out = o / l,  lse = m + log l

    Equal to sdpa up to rounding; returns (out, lse)."""
    q, k, v, key_padding_mask, scale, block_size = online_attention_args(
        q, k, v, key_padding_mask, window, scale, block_size)
    mask = attention_mask(q, k, key_padding_mask, causal, window)  # (B, 1, Lq, Lk)
    k, v = repeat_kv(k, q.shape[1]), repeat_kv(v, q.shape[1])  # (B, Hq, Lk, D)
    shape = q.shape[:3]
    m = np.full(shape + (1,), -np.inf, dtype=q.dtype)  # running max (B, Hq, Lq, 1)
    l = np.zeros(shape + (1,), dtype=q.dtype)  # running sum of exp(s - m)
    o = np.zeros(shape + (v.shape[-1],), dtype=q.dtype)  # running sum of exp(s - m) v
    for start in range(0, k.shape[2], block_size):
        block = slice(start, start + block_size)
        s = scale * (q @ np.swapaxes(k[:, :, block], -1, -2))  # (B, Hq, Lq, block)
        s = np.where(mask[..., block], s, -np.inf)
        m_new = np.maximum(m, s.max(axis=-1, keepdims=True))
        safe = np.where(np.isfinite(m_new), m_new, 0)  # nothing seen yet: keep l, o at 0
        rescale = np.exp(m - safe)
        p = np.exp(s - safe)
        l = l * rescale + p.sum(axis=-1, keepdims=True)
        o = o * rescale + p @ v[:, :, block]
        m = m_new
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(l > 0, o / l, 0).astype(q.dtype)
        lse = np.where(l[..., 0] > 0, m[..., 0] + np.log(l[..., 0]), -np.inf).astype(q.dtype)
    return out, lse


def merge_states_args(out_a, lse_a, out_b, lse_b):
    """Validated (out_a, lse_a, out_b, lse_b): outputs (..., Dv) of one shape, Dv >= 1 (any
    number of rows, 0 included), lse (...) each (-inf allowed: no keys); every backend checks
    through this."""
    out_a = float_array("out_a", out_a, min_ndim=1)
    out_b = float_array("out_b", out_b, min_ndim=1)
    if out_a.shape[-1] == 0:
        raise InputError(f"out_a: value width must be >= 1, got shape {out_a.shape}")
    lse_a = float_array("lse_a", lse_a, allow_neg_inf=True)
    lse_b = float_array("lse_b", lse_b, allow_neg_inf=True)
    if out_b.shape != out_a.shape:
        raise InputError(f"out_b: shape {out_b.shape} differs from out_a's {out_a.shape}")
    for name, lse in (("lse_a", lse_a), ("lse_b", lse_b)):
        if lse.shape != out_a.shape[:-1]:
            raise InputError(f"{name}: expected shape {out_a.shape[:-1]}, got {lse.shape}")
    return out_a, lse_a, out_b, lse_b


def merge_attention_states(out_a, lse_a, out_b, lse_b):
    """Combine attention over two disjoint key sets from their normalised outputs and
    log-sum-exps:

      lse = log(e^lse_a + e^lse_b) = M + log(e^(lse_a - M) + e^(lse_b - M)),  M = max(lse_a, lse_b)
      out = e^(lse_a - lse) out_a + e^(lse_b - lse) out_b

    Associative and commutative; a part with lse -inf (no keys) has weight 0, and two empty
    parts merge to out 0, lse -inf."""
    out_a, lse_a, out_b, lse_b = merge_states_args(out_a, lse_a, out_b, lse_b)
    big = np.maximum(lse_a, lse_b)
    safe = np.where(np.isfinite(big), big, 0)
    wa, wb = np.exp(lse_a - safe), np.exp(lse_b - safe)  # (...,) both 0 when both empty
    total = wa + wb
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = np.where(total > 0, safe + np.log(total), -np.inf)
        out = np.where(total[..., None] > 0,
                       (wa[..., None] * out_a + wb[..., None] * out_b) / total[..., None], 0)
    return out.astype(out_a.dtype), lse.astype(out_a.dtype)


def kv_cache_decode_args(q, k, v, prefill_len, rope_base):
    """Validated (q, k, v, scale 1/sqrt(D), prefill_len): sdpa_args without masks, then
    self-attention (k as long as q), an even head dim (rotate-half RoPE), a positive base
    and 1 <= prefill_len <= L. Every backend checks through this."""
    q, k, v, _, scale = sdpa_args(q, k, v, None, 0, 0.0)
    length = q.shape[2]
    if k.shape[2] != length:
        raise InputError(f"k: length {k.shape[2]} differs from q's {length} (self-attention)")
    if q.shape[3] % 2:
        raise InputError(f"q: head dim {q.shape[3]} is odd; rotate-half RoPE pairs channels")
    positive("rope_base", rope_base)
    if isinstance(prefill_len, bool) or not isinstance(prefill_len, (int, np.integer)) \
            or not 1 <= prefill_len <= length:
        raise InputError(f"prefill_len: must be an integer in [1, {length}], got {prefill_len!r}")
    return q, k, v, scale, int(prefill_len)


def kv_cache_decode(q, k, v, prefill_len=4, rope_base=10000.0):
    """Autoregressive attention through a contiguous KV cache, the way a server runs it:

      prefill: RoPE at positions 0..P-1, append k, v to the cache, causal attention of the
               P queries over the cache;
      decode:  for t = P .. L-1: RoPE at position t, append one k, v, attend the one query
               over the cache[0..t].
    q (B, Hq, L, D), k, v (B, Hkv, L, D) are the un-rotated projections of the whole sequence;
    rotate-half RoPE with the given base. Equal to causal sdpa over the whole rotated sequence.
    """
    q, k, v, scale, prefill_len = kv_cache_decode_args(q, k, v, prefill_len, rope_base)
    length = q.shape[2]
    inv_freq, _ = rope_inv_freq(q.shape[-1], base=rope_base)
    cache_k = np.zeros_like(k)  # (B, Hkv, L, D): preallocated, filled left to right
    cache_v = np.zeros_like(v)
    out = np.empty(q.shape[:3] + (v.shape[-1],), dtype=q.dtype)  # (B, Hq, L, Dv)
    steps = [(0, prefill_len)] + [(t, t + 1) for t in range(prefill_len, length)]
    for start, stop in steps:
        positions = np.arange(start, stop)
        cos, sin = rope_cos_sin(positions, inv_freq)  # (n, D/2)
        cache_k[:, :, start:stop] = rotate(k[:, :, start:stop], cos, sin, False)
        cache_v[:, :, start:stop] = v[:, :, start:stop]
        q_rot = rotate(q[:, :, start:stop], cos, sin, False)
        keys, values = cache_k[:, :, :stop], cache_v[:, :, :stop]
        mask = attention_mask(q_rot, keys, np.ones((q.shape[0], stop), bool), True, 0)
        out[:, :, start:stop], _ = attention_with_lse(q_rot, keys, values, mask, scale)
    return out

