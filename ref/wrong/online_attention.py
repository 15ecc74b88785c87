"""Wrong online_attention variants seen in the wild; each must fail its audit. The mask bugs
are sdpa's (llmref.ref.wrong.sdpa), made in the online form."""
import numpy as np

from llmref.ref._attention import attention_mask
from llmref.ref.sdpa import sdpa_args
from llmref.ref.wrong.sdpa import (masked_attention, top_left_mask, window_causal_mask,
                                   window_off_by_one_mask)


def online_attention_top_left_causal(q, k, v, key_padding_mask, causal=False, window=0,
                                     scale=0.0, block_size=4):
    """online_attention with the top-left causal mask of sdpa_top_left_causal."""
    return masked_attention(top_left_mask, q, k, v, key_padding_mask, causal, window, scale)


def online_attention_window_off_by_one(q, k, v, key_padding_mask, causal=False, window=0,
                                       scale=0.0, block_size=4):
    """online_attention with W + 1 keys in the window."""
    return masked_attention(window_off_by_one_mask, q, k, v, key_padding_mask, causal, window,
                            scale)


def online_attention_window_implies_causal(q, k, v, key_padding_mask, causal=False, window=0,
                                           scale=0.0, block_size=4):
    """online_attention whose window also drops the future keys."""
    return masked_attention(window_causal_mask, q, k, v, key_padding_mask, causal, window, scale)


def online_attention_no_rescale(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0,
                                block_size=4):
    """Forgets to rescale the running sum and output by exp(m_old - m_new) when a later key
    block raises the maximum."""
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    mask = attention_mask(q, k, key_padding_mask, causal, window)
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    m = np.full(q.shape[:3] + (1,), -np.inf, dtype=q.dtype)
    l = np.zeros(q.shape[:3] + (1,), dtype=q.dtype)
    o = np.zeros(q.shape[:3] + (v.shape[-1],), dtype=q.dtype)
    for start in range(0, k.shape[2], block_size):
        block = slice(start, start + block_size)
        s = np.where(mask[..., block], scale * (q @ np.swapaxes(k[:, :, block], -1, -2)), -np.inf)
        m = np.maximum(m, s.max(axis=-1, keepdims=True))
        safe = np.where(np.isfinite(m), m, 0)
        p = np.exp(s - safe)
        l = l + p.sum(axis=-1, keepdims=True)
        o = o + p @ v[:, :, block]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(l > 0, o / l, 0).astype(q.dtype)
        lse = np.where(l[..., 0] > 0, m[..., 0] + np.log(l[..., 0]), -np.inf).astype(q.dtype)
    return out, lse
