"""Wrong RoPE variants seen in the wild; each must fail its audit."""
import numpy as np

from llmref.dtypes import round_to
from llmref.ref.rope import (RopeScaling, rope, rope_args, rope_cos_sin, rope_inv_freq,
                             rope_seq_len, rope_tables, rotary_width, rotate, yarn_mscale)


def rope_pairing_swapped(x, positions, *, interleaved=False, **params):
    """Interleaved pairs for rotate-half weights and vice versa (transformers issue 25199)."""
    return rope(x, positions, interleaved=not interleaved, **params)


def rope_cos_sin_bfloat16(x, positions, *, interleaved=False, partial_rotary_factor=1.0,
                          **scaling):
    """The angle p * inv_freq and its cos/sin formed in bfloat16 (inv_freq buffer cast by
    model.to(bfloat16); sglang-jax issue 1472)."""
    r = rotary_width(x.shape[-1], partial_rotary_factor)
    inv_freq, factor = rope_inv_freq(rotary_dim=r, seq_len=int(np.max(positions)) + 1, **scaling)
    angle = _bf16(_bf16(positions)[..., None] * _bf16(inv_freq))  # (..., r/2) in bfloat16
    cos, sin = _bf16(np.cos(angle) * _bf16(factor[0])), _bf16(np.sin(angle) * _bf16(factor[0]))
    return _rotated(x, cos, sin, positions, r, interleaved)


def rope_cos_sin_tables_bfloat16(x, positions, *, interleaved=False, partial_rotary_factor=1.0,
                                 **scaling):
    """Exact angles, cos/sin rounded to bfloat16, rotation in x's precision: a cos/sin cache
    kept in the model dtype and applied to float32 activations."""
    x, cos, sin = rope_tables(x, positions, partial_rotary_factor=partial_rotary_factor, **scaling)
    r = 2 * cos.shape[-1]
    return np.concatenate([rotate(x[..., :r], _bf16(cos), _bf16(sin), interleaved), x[..., r:]],
                          axis=-1)


def rope_yarn_factor_ignores_mscale(x, positions, **params):
    """YaRN's cos/sin factor taken as mscale(f, 1) even when mscale and mscale_all_dim are set
    (their ratio, 1 for DeepSeek-V3): the rotation scaled by mscale(f, 1) / ratio."""
    y = rope(x, positions, **params)
    s = RopeScaling(**{k: v for k, v in params.items()
                       if k not in ("interleaved", "partial_rotary_factor")})
    if s.rope_type != "yarn" or not (s.mscale and s.mscale_all_dim):
        return y
    r = rotary_width(x.shape[-1], params.get("partial_rotary_factor", 1.0))
    ratio = yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim)
    y[..., :r] *= yarn_mscale(s.factor) / ratio
    return y


def rope_partial_head_dim_frequencies(x, positions, *, interleaved=False,
                                      partial_rotary_factor=1.0, base=10000.0, **ignored):
    """Partial rotary with inv_freq_i = base^(-2i/D) (head dim) instead of base^(-2i/r)."""
    x, positions, r = rope_args(x, positions, partial_rotary_factor)
    inv_freq = 1.0 / base ** (np.arange(0, r, 2, dtype=np.float64) / x.shape[-1])
    cos, sin = rope_cos_sin(positions, inv_freq)
    return _rotated(x, cos, sin, positions, r, interleaved)


def _rotated(x, cos, sin, positions, r, interleaved):
    """x with its first r channels rotated by cos, sin (L, r/2) or (B, L, r/2)."""
    if positions.ndim == 2:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, L, r/2): broadcast over heads
    return np.concatenate([rotate(x[..., :r], cos, sin, interleaved), x[..., r:]], axis=-1)


def _bf16(values):
    """values rounded to bfloat16 (llmref's rounding), widened back to float64."""
    return round_to(np.asarray(values, np.float64), "bfloat16").astype(np.float64)


def rope_inv_freq_bfloat16(*, rotary_dim=8, **params):
    """inv_freq rounded to bfloat16 (transformers issue 25681)."""
    inv_freq, factor = rope_inv_freq(rotary_dim=rotary_dim, **params)
    return _bf16(inv_freq), factor


def rope_inv_freq_yarn_half_clamp(*, rotary_dim=8, **params):
    """YaRN with the correction range clamped to d/2 - 1 and never truncated (keras-hub PR 2981)."""
    inv_freq, attention_factor = rope_inv_freq(rotary_dim=rotary_dim, **params)
    s = RopeScaling(**{k: v for k, v in params.items() if k != "seq_len"})
    if s.rope_type != "yarn":
        return inv_freq, attention_factor
    d = rotary_dim

    def correction_dim(rotations):
        turns = s.original_max_position_embeddings / (rotations * 2 * np.pi)
        return d * np.log(turns) / (2 * np.log(s.base))

    low, high = max(correction_dim(s.beta_fast), 0), min(correction_dim(s.beta_slow), d // 2 - 1)
    ramp = np.clip((np.arange(d // 2) - low) / (high - low), 0, 1)
    plain = 1.0 / s.base ** (np.arange(0, d, 2, dtype=np.float64) / d)
    return plain * (1 - ramp) + plain / s.factor * ramp, attention_factor
