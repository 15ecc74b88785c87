"""Online (flash-style, blockwise) attention (specs/online_attention.yaml): sdpa computed in
one pass over key blocks, returning the log-sum-exp as well. Layout and masks:
llmref.ref._attention.
"""
import numpy as np

from llmref.ref._attention import attention_mask, repeat_kv
from llmref.ref.sdpa import sdpa_args
from llmref.validate import integer


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


def online_attention_args(q, k, v, key_padding_mask, window, scale, block_size):
    """sdpa_args plus block_size, an integer >= 1; returns sdpa_args' values and block_size.
    Every backend checks through this."""
    checked = sdpa_args(q, k, v, key_padding_mask, window, scale)
    return checked + (integer("block_size", block_size, low=1),)


# --- invariants (specs/online_attention.yaml) ---


def invariant_block_size(fn, spec, case, at, dtype):
    """The key block size only decides how often the running state is rescaled: blocks of 1,
    3 and 64 keys give outputs that agree with the case's own."""
    from llmref.invariants import agree, run

    base = run(fn, spec, at.inputs, case.params)
    for block_size in (1, 3, 64):
        ok, detail = agree(spec, case, dtype, base, run(fn, spec, at.inputs, {**case.params, "block_size": block_size}))
        if not ok:
            return False, f"block size {block_size}: {detail}"
    return True, ""

