"""Scaled dot-product attention (specs/sdpa.yaml), with grouped KV heads, bottom-right causal
and sliding-window masks and key padding. Layout and masks: llmref.ref._attention.

sdpa_args is also the check of online_attention and kv_cache_decode (the same q, k, v).
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref._attention import attention_mask, attention_with_lse
from llmref.validate import float_array, integer, positive


def sdpa(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """out[b, h, i] = sum_j softmax_j(s[b, h, i, :]) v[b, h // G, j],  G = Hq / Hkv
       s[b, h, i, j] = scale * q[b, h, i] . k[b, h // G, j]   (-inf where masked)
    scale 0 means 1/sqrt(D). Fully masked rows give 0."""
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    out, _ = attention_with_lse(q, k, v, attention_mask(q, k, key_padding_mask, causal, window),
                                scale)
    return out


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
    integer("window", window, low=0)  # 0 = no window
    scale = positive("scale", 0.0 if scale is None else scale, allow_zero=True)
    return q, k, v, key_padding_mask, float(1.0 / np.sqrt(d) if scale == 0 else scale)
