"""Wrong kv_cache_decode variants seen in the wild; each must fail its audit."""
import numpy as np

from llmref.ref._attention import attention_mask, attention_with_lse
from llmref.ref.kv_cache_decode import decode_rope_tables, decode_steps, kv_cache_decode_args
from llmref.ref.rope import rotate


def kv_cache_decode_position_off_by_one(q, k, v, prefill_len=4, rope_base=10000.0):
    """Decode steps rotate the new token at position t + 1 (the cache length after the
    append) instead of t: the prefill is right, every decoded token is wrong."""
    q, k, v, scale, prefill_len = kv_cache_decode_args(q, k, v, prefill_len, rope_base)
    cos, sin = decode_rope_tables(q.shape[2] + 1, q.shape[3], rope_base)  # positions 0 .. L
    cache_k, cache_v = np.zeros_like(k), np.zeros_like(v)
    out = np.empty(q.shape[:3] + (v.shape[-1],), dtype=q.dtype)
    for start, stop in decode_steps(prefill_len, q.shape[2]):
        first = start if start == 0 else stop  # the bug: decode uses the new cache length
        at = slice(first, first + stop - start)
        cache_k[:, :, start:stop] = rotate(k[:, :, start:stop], cos[at], sin[at], False)
        cache_v[:, :, start:stop] = v[:, :, start:stop]
        q_rot = rotate(q[:, :, start:stop], cos[at], sin[at], False)
        mask = attention_mask(q_rot, cache_k[:, :, :stop], np.ones((q.shape[0], stop), bool),
                              True, 0)
        out[:, :, start:stop], _ = attention_with_lse(q_rot, cache_k[:, :, :stop],
                                                      cache_v[:, :, :stop], mask, scale)
    return out
