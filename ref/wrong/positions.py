"""Wrong position-encoding variants seen in the wild; each must fail its audit."""
import numpy as np

from llmref.dtypes import round_to
from llmref.ref.positions import (rope, rope_args, rope_cos_sin, rope_inv_freq, rope_seq_len,
                                  rotary_width, rotate, yarn_mscale)


def rope_pairing_swapped(x, positions, interleaved=False, **scaling):
    """Interleaved pairs for rotate-half weights and vice versa (transformers issue 25199)."""
    return rope(x, positions, interleaved=not interleaved, **scaling)


def rope_cos_sin_bfloat16(x, positions, interleaved=False, partial_rotary_factor=1.0,
                          rope_type="default", base=10000.0, **scaling):
    """The angle p * inv_freq and its cos/sin formed in bfloat16 (inv_freq buffer cast by
    model.to(bfloat16); sglang-jax issue 1472)."""
    r = rotary_width(x.shape[-1], partial_rotary_factor)
    inv_freq, factor = rope_inv_freq(r, rope_type, base, seq_len=int(np.max(positions)) + 1,
                                     **scaling)
    angle = _bf16(_bf16(positions)[..., None] * _bf16(inv_freq))  # (..., r/2) in bfloat16
    cos, sin = _bf16(np.cos(angle) * _bf16(factor[0])), _bf16(np.sin(angle) * _bf16(factor[0]))
    if positions.ndim == 2:
        cos, sin = cos[:, None], sin[:, None]
    return np.concatenate([rotate(x[..., :r], cos, sin, interleaved), x[..., r:]], axis=-1)


def rope_cos_sin_tables_bfloat16(x, positions, interleaved=False, partial_rotary_factor=1.0,
                                 **scaling):
    """Exact angles, cos/sin rounded to bfloat16, rotation in x's precision: a cos/sin cache
    kept in the model dtype and applied to float32 activations."""
    x, positions, r = rope_args(x, positions, partial_rotary_factor)
    inv_freq, factor = rope_inv_freq(r, seq_len=rope_seq_len(positions), **scaling)
    cos, sin = (_bf16(t) for t in rope_cos_sin(positions, inv_freq, factor[0]))  # (..., r/2)
    if positions.ndim == 2:
        cos, sin = cos[:, None], sin[:, None]
    return np.concatenate([rotate(x[..., :r], cos, sin, interleaved), x[..., r:]], axis=-1)


def rope_yarn_factor_ignores_mscale(x, positions, rope_type="default", factor=1.0, mscale=0.0,
                                    mscale_all_dim=0.0, **params):
    """YaRN's cos/sin factor taken as mscale(f, 1) even when mscale and mscale_all_dim are set
    (their ratio, 1 for DeepSeek-V3): the rotation scaled by mscale(f, 1) / ratio."""
    y = rope(x, positions, rope_type=rope_type, factor=factor, mscale=mscale,
             mscale_all_dim=mscale_all_dim, **params)
    if rope_type != "yarn" or not (mscale and mscale_all_dim):
        return y
    r = rotary_width(x.shape[-1], params.get("partial_rotary_factor", 1.0))
    ratio = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
    y[..., :r] *= yarn_mscale(factor) / ratio
    return y


def _bf16(values):
    """values rounded to bfloat16 (llmref's rounding), widened back to float64."""
    return round_to(np.asarray(values, np.float64), "bfloat16").astype(np.float64)


def rope_partial_head_dim_frequencies(x, positions, interleaved=False, partial_rotary_factor=1.0,
                                      base=10000.0, **ignored):
    """Partial rotary with inv_freq_i = base^(-2i/D) (head dim) instead of base^(-2i/r)."""
    r = rotary_width(x.shape[-1], partial_rotary_factor)
    inv_freq = 1.0 / base ** (np.arange(0, r, 2, dtype=np.float64) / x.shape[-1])
    angle = positions.astype(np.float64)[..., None] * inv_freq
    cos, sin = np.cos(angle), np.sin(angle)
    if positions.ndim == 2:
        cos, sin = cos[:, None], sin[:, None]
    return np.concatenate([rotate(x[..., :r], cos, sin, interleaved), x[..., r:]], axis=-1)


def rope_inv_freq_bfloat16(rotary_dim=8, **params):
    """inv_freq rounded to bfloat16 (transformers issue 25681)."""
    inv_freq, factor = rope_inv_freq(rotary_dim, **params)
    return _bf16(inv_freq), factor


def rope_inv_freq_yarn_half_clamp(rotary_dim=8, rope_type="default", base=10000.0, factor=1.0,
                                  original_max_position_embeddings=4096, beta_fast=32.0,
                                  beta_slow=1.0, **params):
    """YaRN with the correction range clamped to d/2 - 1 and never truncated (keras-hub PR 2981)."""
    inv_freq, attention_factor = rope_inv_freq(rotary_dim, rope_type, base, factor,
                                               original_max_position_embeddings, **params,
                                               beta_fast=beta_fast, beta_slow=beta_slow)
    if rope_type != "yarn":
        return inv_freq, attention_factor
    d = rotary_dim

    def correction_dim(rotations):
        turns = original_max_position_embeddings / (rotations * 2 * np.pi)
        return d * np.log(turns) / (2 * np.log(base))

    low, high = max(correction_dim(beta_fast), 0), min(correction_dim(beta_slow), d // 2 - 1)
    ramp = np.clip((np.arange(d // 2) - low) / (high - low), 0, 1)
    plain = 1.0 / base ** (np.arange(0, d, 2, dtype=np.float64) / d)
    return plain * (1 - ramp) + plain / factor * ramp, attention_factor


def sinusoidal_concatenated(positions, dim=16, base=10000.0):
    """[sin(all frequencies), cos(all frequencies)] instead of interleaved pairs."""
    inv_freq = 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    angle = positions.astype(np.float64)[..., None] * inv_freq
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=-1)


def learned_positions_one_based(table, positions):
    """table[positions + 1], clamped to the last row."""
    return table[np.minimum(positions + 1, table.shape[0] - 1)]
