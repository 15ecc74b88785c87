"""What the attention families share: the masks, the GQA head grouping, masked attention with
its log-sum-exp, and the paged KV pool's check (used by sdpa, online_attention, kv_cache_decode, mla,
kv_write and paged_attention_decode, and by their wrong variants).

Layout: q (B, Hq, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv). Query head h reads KV head
h // (Hq / Hkv) (MHA: Hkv = Hq; MQA: Hkv = 1; GQA in between), i.e. every KV head is
repeated (repeat_interleave) for a contiguous group of query heads, never tiled.

Masking, all combined with AND:
  causal          bottom-right aligned: query i sits at absolute position i + Lk - Lq and sees
                  keys j <= i + Lk - Lq (flash-attn >= 2.1; torch's is_causal is top-left)
  window W > 0    keys j > i + Lk - Lq - W: exactly W keys including the current one
  key_padding     key j of batch b is kept where key_padding_mask[b, j] is True
A query row with no key left has output 0 and log-sum-exp -inf (flash-attn, ONNX Attention).

Paged KV pool: k_cache, v_cache (num_blocks, block_size, Hkv, D); token position pos of a
sequence lives in block block_table[pos // block_size] at offset pos % block_size.
"""
import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array


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


def repeat_kv(x, n_query_heads):
    """(B, Hkv, L, D) -> (B, Hq, L, D): KV head j serves query heads j*G .. j*G + G-1."""
    group = n_query_heads // x.shape[1]
    return np.repeat(x, group, axis=1)  # repeat_interleave, not tile


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


def check_cache_pair(k_cache, v_cache, values=True):
    """k_cache, v_cache: (num_blocks, block_size, num_kv_heads, head_dim), same shape and dtype,
    every dim >= 1 (a pool without a slot, a head or a channel is an error); with `values`,
    no NaN or inf anywhere in them (without, the caller checks the rows it reads)."""
    k_cache = float_array("k_cache", k_cache, ndim=4, allow_nan=not values, allow_inf=not values)
    v_cache = float_array("v_cache", v_cache, ndim=4, allow_nan=not values, allow_inf=not values)
    if min(k_cache.shape) == 0:
        raise InputError(f"k_cache: (num_blocks, block_size, num_kv_heads, head_dim) must all be "
                         f">= 1, got {k_cache.shape}")
    if v_cache.shape != k_cache.shape or v_cache.dtype != k_cache.dtype:
        raise InputError(f"v_cache: shape {v_cache.shape} {v_cache.dtype} differs from k_cache "
                         f"{k_cache.shape} {k_cache.dtype}")
    return k_cache, v_cache


def invariant_chunked_prefill(fn, spec, case, at, dtype):
    """Causal attention over Lq queries in one call equals two calls, one per half of the
    queries, each given the keys its queries may see (bottom-right alignment: query i of a
    call with Lq queries and Lk keys sees j <= i + Lk - Lq, so the first m queries need only
    the first Lk - (Lq - m) keys): the concatenated outputs agree. Non-causal calls, single
    queries and chunks that would see no key do not apply."""
    from llmref.invariants import agree, run

    inputs, params = at.inputs, case.params
    lq, lk = inputs["q"].shape[2], inputs["k"].shape[2]
    m = lq // 2
    keys = lk - (lq - m)  # keys the first m queries may see
    if not params.get("causal") or lq < 2 or keys < 1:
        return None, ""
    first = dict(inputs, q=inputs["q"][:, :, :m], k=inputs["k"][:, :, :keys], v=inputs["v"][:, :, :keys],
                 key_padding_mask=inputs["key_padding_mask"][:, :keys])
    second = dict(inputs, q=inputs["q"][:, :, m:])
    a, b = run(fn, spec, first, params), run(fn, spec, second, params)
    joined = {name: np.concatenate([a[name], b[name]], axis=2) for name in a}  # along Lq
    return agree(spec, case, dtype, run(fn, spec, inputs, params), joined)

