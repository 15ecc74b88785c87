"""Wrong sdpa variants seen in the wild; each must fail its audit. The masks are shared with
the online_attention variants (llmref.ref.wrong.online_attention)."""
import numpy as np

from llmref.ref._attention import attention_mask, attention_with_lse
from llmref.ref.sdpa import sdpa_args


def sdpa_gqa_tiled(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """Query head h reads KV head h % Hkv: np.tile instead of np.repeat (onnx PR 7274)."""
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    reps = (1, q.shape[1] // k.shape[1], 1, 1)
    k, v = np.tile(k, reps), np.tile(v, reps)  # (B, Hq, Lk, D) in order kv0, kv1, kv0, kv1
    mask = attention_mask(q, k, key_padding_mask, causal, window)
    return attention_with_lse(q, k, v, mask, scale)[0]


def sdpa_top_left_causal(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """Causal mask j <= i, as torch's is_causal=True, whatever Lk - Lq is."""
    return masked_attention(top_left_mask, q, k, v, key_padding_mask, causal, window, scale)[0]


def sdpa_window_off_by_one(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """Window j >= i - W: W + 1 keys including the current one."""
    return masked_attention(window_off_by_one_mask, q, k, v, key_padding_mask, causal, window,
                            scale)[0]


def sdpa_window_implies_causal(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """A sliding window that also drops the future keys, as if every windowed call were
    causal (a band mask j in (i - W, i] built without looking at the causal flag)."""
    return masked_attention(window_causal_mask, q, k, v, key_padding_mask, causal, window,
                            scale)[0]


def sdpa_missing_scale(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """Logits q . k without the 1/sqrt(D) factor."""
    return masked_attention(attention_mask, q, k, v, key_padding_mask, causal, window,
                            1.0 if scale == 0 else scale)[0]


def sdpa_fully_masked_nan(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """softmax of masked logits without guarding empty rows: exp(-inf - -inf) = NaN."""
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.where(attention_mask(q, k, key_padding_mask, causal, window),
                 scale * (q @ np.swapaxes(k, -1, -2)), -np.inf)
    with np.errstate(invalid="ignore"):
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        return (p / p.sum(axis=-1, keepdims=True)) @ v


def masked_attention(mask_fn, q, k, v, key_padding_mask, causal, window, scale):
    """(out, lse) of attention under mask_fn(q, k, key_padding_mask, causal, window)."""
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    return attention_with_lse(q, k, v, mask_fn(q, k, key_padding_mask, causal, window), scale)


def top_left_mask(q, k, key_padding_mask, causal, window):
    """Query i sees keys j <= i (and j > i - W): aligned at the top-left corner."""
    i, j = np.arange(q.shape[2])[:, None], np.arange(k.shape[2])[None, :]
    keep = (j <= i) if causal else np.ones((q.shape[2], k.shape[2]), bool)
    if window > 0:
        keep &= j > i - window
    return keep[None, None] & key_padding_mask[:, None, None, :]


def window_off_by_one_mask(q, k, key_padding_mask, causal, window):
    """The window keeps W + 1 keys."""
    return attention_mask(q, k, key_padding_mask, causal, window + 1 if window > 0 else 0)


def window_causal_mask(q, k, key_padding_mask, causal, window):
    """A window implies the causal mask."""
    return attention_mask(q, k, key_padding_mask, causal or window > 0, window)
