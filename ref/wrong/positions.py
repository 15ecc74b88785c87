"""Wrong position-encoding variants seen in the wild; each must fail its audit."""
import ml_dtypes
import numpy as np

from llmref.ref.positions import rope, rope_inv_freq, rotary_width, rotate


def rope_pairing_swapped(x, positions, interleaved=False, **scaling):
    """Interleaved pairs for rotate-half weights and vice versa (transformers issue 25199)."""
    return rope(x, positions, interleaved=not interleaved, **scaling)


def rope_cos_sin_bfloat16(x, positions, interleaved=False, partial_rotary_factor=1.0,
                          rope_type="default", base=10000.0, **scaling):
    """The angle p * inv_freq and its cos/sin formed in bfloat16 (inv_freq buffer cast by
    model.to(bfloat16); sglang-jax issue 1472)."""
    bf16 = ml_dtypes.bfloat16
    r = rotary_width(x.shape[-1], partial_rotary_factor)
    inv_freq, factor = rope_inv_freq(r, rope_type, base, seq_len=int(np.max(positions)) + 1,
                                     **scaling)
    angle = positions.astype(bf16)[..., None] * inv_freq.astype(bf16)  # (..., r/2) in bfloat16
    cos = (np.cos(angle) * bf16(factor[0])).astype(bf16)
    sin = (np.sin(angle) * bf16(factor[0])).astype(bf16)
    if positions.ndim == 2:
        cos, sin = cos[:, None], sin[:, None]
    return np.concatenate([rotate(x[..., :r], cos, sin, interleaved), x[..., r:]], axis=-1)


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
    return inv_freq.astype(ml_dtypes.bfloat16).astype(np.float64), factor


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
