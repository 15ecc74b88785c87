"""Wrong attention variants seen in the wild; each must fail its audit."""
import numpy as np

from llmref.ref.attention import attention_mask, attention_with_lse, sdpa_args
from llmref.ref.positions import rope_cos_sin, rope_inv_freq, rotate


def sdpa_gqa_tiled(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """Query head h reads KV head h % Hkv: np.tile instead of np.repeat (onnx PR 7274)."""
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    reps = (1, q.shape[1] // k.shape[1], 1, 1)
    k, v = np.tile(k, reps), np.tile(v, reps)  # (B, Hq, Lk, D) in order kv0, kv1, kv0, kv1
    mask = attention_mask(q, k, key_padding_mask, causal, window)
    return attention_with_lse(q, k, v, mask, scale)[0]


def sdpa_top_left_causal(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """Causal mask j <= i, as torch's is_causal=True, whatever Lk - Lq is."""
    return _masked(_top_left_mask, q, k, v, key_padding_mask, causal, window, scale)[0]


def sdpa_window_off_by_one(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """Window j >= i - W: W + 1 keys including the current one."""
    return _masked(_window_off_by_one_mask, q, k, v, key_padding_mask, causal, window, scale)[0]


def sdpa_window_implies_causal(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """A sliding window that also drops the future keys, as if every windowed call were
    causal (a band mask j in (i - W, i] built without looking at the causal flag)."""
    return _masked(_window_causal_mask, q, k, v, key_padding_mask, causal, window, scale)[0]


def online_attention_top_left_causal(q, k, v, key_padding_mask, causal=False, window=0,
                                     scale=0.0, block_size=4):
    """online_attention with the top-left causal mask of sdpa_top_left_causal."""
    return _masked(_top_left_mask, q, k, v, key_padding_mask, causal, window, scale)


def online_attention_window_off_by_one(q, k, v, key_padding_mask, causal=False, window=0,
                                       scale=0.0, block_size=4):
    """online_attention with W + 1 keys in the window."""
    return _masked(_window_off_by_one_mask, q, k, v, key_padding_mask, causal, window, scale)


def online_attention_window_implies_causal(q, k, v, key_padding_mask, causal=False, window=0,
                                           scale=0.0, block_size=4):
    """online_attention whose window also drops the future keys."""
    return _masked(_window_causal_mask, q, k, v, key_padding_mask, causal, window, scale)


def _masked(mask_fn, q, k, v, key_padding_mask, causal, window, scale):
    """(out, lse) of attention under mask_fn(q, k, key_padding_mask, causal, window)."""
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    return attention_with_lse(q, k, v, mask_fn(q, k, key_padding_mask, causal, window), scale)


def _top_left_mask(q, k, key_padding_mask, causal, window):
    """Query i sees keys j <= i (and j > i - W): aligned at the top-left corner."""
    i, j = np.arange(q.shape[2])[:, None], np.arange(k.shape[2])[None, :]
    keep = (j <= i) if causal else np.ones((q.shape[2], k.shape[2]), bool)
    if window > 0:
        keep &= j > i - window
    return keep[None, None] & key_padding_mask[:, None, None, :]


def _window_off_by_one_mask(q, k, key_padding_mask, causal, window):
    return attention_mask(q, k, key_padding_mask, causal, window + 1 if window > 0 else 0)


def _window_causal_mask(q, k, key_padding_mask, causal, window):
    return attention_mask(q, k, key_padding_mask, causal or window > 0, window)


def sdpa_missing_scale(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """Logits q . k without the 1/sqrt(D) factor."""
    return _sdpa(q, k, v, key_padding_mask, causal, window, 1.0 if scale == 0 else scale)


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


def _sdpa(q, k, v, key_padding_mask, causal, window, scale):
    q, k, v, key_padding_mask, scale = sdpa_args(q, k, v, key_padding_mask, window, scale)
    mask = attention_mask(q, k, key_padding_mask, causal, window)
    return attention_with_lse(q, k, v, mask, scale)[0]


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


def merge_without_max(out_a, lse_a, out_b, lse_b):
    """Weights exp(lse_a), exp(lse_b) without subtracting the maximum: overflow to inf/inf."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        wa, wb = np.exp(lse_a), np.exp(lse_b)
        total = wa + wb
        out = (wa[..., None] * out_a + wb[..., None] * out_b) / total[..., None]
        return out, np.log(total)


def kv_cache_decode_position_off_by_one(q, k, v, prefill_len=4, rope_base=10000.0):
    """Decode steps rotate the new token at position t + 1 (the cache length after the
    append) instead of t: the prefill is right, every decoded token is wrong."""
    q, k, v, _, scale = sdpa_args(q, k, v, None, 0, 0.0)
    inv_freq, _ = rope_inv_freq(q.shape[-1], base=rope_base)
    cache_k, cache_v = np.zeros_like(k), np.zeros_like(v)
    out = np.empty(q.shape[:3] + (v.shape[-1],), dtype=q.dtype)
    steps = [(0, prefill_len)] + [(t, t + 1) for t in range(prefill_len, q.shape[2])]
    for start, stop in steps:
        first = start if start == 0 else stop  # the bug: decode uses the new cache length
        cos, sin = rope_cos_sin(np.arange(first, first + stop - start), inv_freq)
        cache_k[:, :, start:stop] = rotate(k[:, :, start:stop], cos, sin, False)
        cache_v[:, :, start:stop] = v[:, :, start:stop]
        q_rot = rotate(q[:, :, start:stop], cos, sin, False)
        mask = attention_mask(q_rot, cache_k[:, :, :stop], np.ones((q.shape[0], stop), bool),
                              True, 0)
        out[:, :, start:stop], _ = attention_with_lse(q_rot, cache_k[:, :, :stop],
                                                      cache_v[:, :, :stop], mask, scale)
    return out
