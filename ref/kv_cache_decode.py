"""Autoregressive decoding through a contiguous KV cache (specs/kv_cache_decode.yaml): a
prefill chunk, then one token per step, each rotated by RoPE at its position, appended to the
cache and attended over the cache so far. Layout and masks: llmref.ref._attention.
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref._attention import attention_mask, attention_with_lse
from llmref.ref.rope import rope_cos_sin, rope_inv_freq, rotate
from llmref.ref.sdpa import sdpa_args
from llmref.validate import integer, positive


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
    cos, sin = decode_rope_tables(q.shape[2], q.shape[3], rope_base)  # (L, D/2) each
    cache_k = np.zeros_like(k)  # (B, Hkv, L, D): preallocated, filled left to right
    cache_v = np.zeros_like(v)
    out = np.empty(q.shape[:3] + (v.shape[-1],), dtype=q.dtype)  # (B, Hq, L, Dv)
    for start, stop in decode_steps(prefill_len, q.shape[2]):
        step = slice(start, stop)
        cache_k[:, :, step] = rotate(k[:, :, step], cos[step], sin[step], False)
        cache_v[:, :, step] = v[:, :, step]
        q_rot = rotate(q[:, :, step], cos[step], sin[step], False)
        keys, values = cache_k[:, :, :stop], cache_v[:, :, :stop]
        mask = attention_mask(q_rot, keys, np.ones((q.shape[0], stop), bool), True, 0)
        out[:, :, step], _ = attention_with_lse(q_rot, keys, values, mask, scale)
    return out


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
    prefill_len = integer("prefill_len", prefill_len, low=1, high=length)
    return q, k, v, scale, prefill_len


def decode_steps(prefill_len, length):
    """The server's steps as [start, stop) token ranges: the prefill chunk, then one token each."""
    return [(0, prefill_len)] + [(t, t + 1) for t in range(prefill_len, length)]


def decode_rope_tables(length, head_dim, rope_base):
    """float64 cos, sin (L, D/2) of plain RoPE at positions 0 .. L-1."""
    inv_freq, _ = rope_inv_freq(rotary_dim=head_dim, base=rope_base)
    return rope_cos_sin(np.arange(length), inv_freq)
