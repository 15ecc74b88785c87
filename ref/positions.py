"""Position encodings: sinusoidal and learned absolute, and rotary (RoPE) with its scalings
(specs/sinusoidal_positions.yaml, learned_positions.yaml, rope_inv_freq.yaml, rope.yaml).

Precision: inverse frequencies, angles pos * inv_freq and their cos/sin are computed in
float64 whatever the activation dtype; only the rotation x*cos + rot(x)*sin runs in the
precision of x. (In float16/bfloat16 the angle at position 4095 is off by a large fraction of
a turn, so the tables must never be computed in the activation dtype.)
"""
import math

import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array, int_array, positive

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")


def sinusoidal_positions(positions, dim=16, base=10000.0):
    """PE[p, 2i] = sin(p / base^(2i/dim)),  PE[p, 2i+1] = cos(p / base^(2i/dim))   (float64).

    Sine and cosine of the same frequency are interleaved, as in the paper (Vaswani et al.,
    sec. 3.5); tensor2tensor instead concatenates all sines then all cosines.
    """
    positions = int_array("positions", positions, low=0)
    _even("dim", dim)
    positive("base", base)
    inv_freq = 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)  # (dim/2,)
    angle = positions.astype(np.float64)[..., None] * inv_freq  # (..., dim/2)
    pe = np.stack([np.sin(angle), np.cos(angle)], axis=-1)  # (..., dim/2, 2)
    return pe.reshape(*positions.shape, dim)  # (..., dim): sin, cos, sin, cos, ...


def learned_positions(table, positions):
    """out[..., :] = table[positions[...], :]: a learned absolute position embedding is a
    row lookup (GPT-2's wpe); a position outside [0, len(table)) is an error, not a wrap."""
    table = float_array("table", table, ndim=2)
    positions = int_array("positions", positions, low=0, high=table.shape[0])
    return table[positions]  # (..., D)


def rope_inv_freq(rotary_dim=8, rope_type="default", base=10000.0, factor=1.0,
                  original_max_position_embeddings=4096, seq_len=0, low_freq_factor=1.0,
                  high_freq_factor=4.0, beta_fast=32.0, beta_slow=1.0, mscale=0.0,
                  mscale_all_dim=0.0, truncate=True):
    """The rotary inverse frequencies (rotary_dim/2,) and the cos/sin attention factor (1,),
    in float64, for one scaling type (HF modeling_rope_utils.ROPE_INIT_FUNCTIONS semantics):

      default   inv_freq_i = base^(-2i/d),  attention_factor 1
      linear    inv_freq / factor   (position interpolation: the same as pos / factor)
      dynamic   base' = base * (factor*L/L0 - (factor-1))^(d/(d-2)),  L = max(seq_len, L0)
      yarn      blend of inv_freq and inv_freq/factor by a linear ramp over the dims between
                the correction dims of beta_fast and beta_slow rotations;
                attention_factor = mscale(factor, mscale)/mscale(factor, mscale_all_dim)
                when both are set, else mscale(factor, 1);  mscale(s, m) = 0.1 m ln s + 1
      llama3    low-frequency dims (wavelength > L0/low_freq_factor) / factor, high ones kept,
                the band between interpolated smoothly
    where d = rotary_dim and L0 = original_max_position_embeddings.
    """
    _even("rotary_dim", rotary_dim)
    if rope_type not in ROPE_TYPES:
        raise InputError(f"rope_type: {rope_type!r} is not one of {ROPE_TYPES}")
    positive("base", base)
    positive("factor", factor)
    positive("original_max_position_embeddings", original_max_position_embeddings)
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 0:
        raise InputError(f"seq_len: must be an integer >= 0, got {seq_len!r}")
    d = rotary_dim
    exponent = np.arange(0, d, 2, dtype=np.float64) / d  # (d/2,): 2i/d
    inv_freq = 1.0 / base ** exponent
    attention_factor = 1.0
    if rope_type == "linear":
        inv_freq = inv_freq / factor
    elif rope_type == "dynamic":
        length = max(seq_len, original_max_position_embeddings)
        scaled_base = base * (factor * length / original_max_position_embeddings
                              - (factor - 1)) ** (d / (d - 2))
        inv_freq = 1.0 / scaled_base ** exponent
    elif rope_type == "yarn":
        inv_freq = _yarn_inv_freq(inv_freq, d, base, factor, original_max_position_embeddings,
                                  beta_fast, beta_slow, truncate)
        if mscale and mscale_all_dim:
            attention_factor = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = yarn_mscale(factor)
    elif rope_type == "llama3":
        inv_freq = _llama3_inv_freq(inv_freq, factor, original_max_position_embeddings,
                                    low_freq_factor, high_freq_factor)
    return inv_freq, np.array([attention_factor], dtype=np.float64)  # (1,)


def yarn_mscale(scale, mscale=1.0):
    """mscale(s, m) = 0.1 * m * ln(s) + 1 for s > 1, else 1 (YaRN, Peng et al. 2023, eq. 22)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn_inv_freq(inv_freq, d, base, factor, original_len, beta_fast, beta_slow, truncate):
    """inv_freq*(1-ramp) + inv_freq/factor*ramp: dims rotating more than beta_fast times over
    the original context keep their frequency, fewer than beta_slow times are interpolated."""
    def correction_dim(rotations):
        return d * math.log(original_len / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero
    ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    return inv_freq * (1.0 - ramp) + (inv_freq / factor) * ramp


def _llama3_inv_freq(inv_freq, factor, original_len, low_freq_factor, high_freq_factor):
    """Llama 3.1 frequency-dependent scaling (meta-llama llama-models apply_scaling)."""
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = original_len / low_freq_factor
    high_freq_wavelen = original_len / high_freq_factor
    smooth = (original_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(medium, smoothed, out)


def rope_cos_sin(positions, inv_freq, attention_factor=1.0):
    """cos, sin of angle[..., i] = positions[...] * inv_freq[i], times attention_factor;
    float64, shape (..., rotary_dim/2)."""
    angle = positions.astype(np.float64)[..., None] * inv_freq  # (..., d/2)
    return np.cos(angle) * attention_factor, np.sin(angle) * attention_factor


def rotate(x, cos, sin, interleaved):
    """Rotate each pair (a, b) of x's last axis by the angle: (a cos - b sin, b cos + a sin).

    interleaved=False (rotate-half, GPT-NeoX, HF Llama): pair i is (x[i], x[i + d/2]).
    interleaved=True (GPT-J, RoFormer, Meta's complex form): pair i is (x[2i], x[2i+1]).
    cos, sin: (..., d/2), broadcast against x (..., d); computed in x's dtype.
    """
    cos, sin = cos.astype(x.dtype), sin.astype(x.dtype)
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]  # (..., d/2) each
        return np.stack([a * cos - b * sin, b * cos + a * sin], axis=-1).reshape(x.shape)
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def rope(x, positions, interleaved=False, partial_rotary_factor=1.0, rope_type="default",
         base=10000.0, factor=1.0, original_max_position_embeddings=4096, low_freq_factor=1.0,
         high_freq_factor=4.0, beta_fast=32.0, beta_slow=1.0, mscale=0.0, mscale_all_dim=0.0):
    """Rotary position embedding of x (B, H, L, D) at positions (L,) or (B, L):

      r = int(D * partial_rotary_factor);  x[..., :r] rotated by angle pos * inv_freq
      (inv_freq from rope_inv_freq for rope_type), cos/sin scaled by the attention factor;
      x[..., r:] passes through unchanged.

    For rope_type 'dynamic' the sequence length is max(positions) + 1.
    """
    x = float_array("x", x, ndim=4)
    positions = check_positions("positions", positions, x.shape[0], x.shape[2])
    rotary_dim = rotary_width(x.shape[-1], partial_rotary_factor)
    inv_freq, attention_factor = rope_inv_freq(
        rotary_dim, rope_type, base, factor, original_max_position_embeddings,
        int(positions.max()) + 1 if positions.size else 0, low_freq_factor, high_freq_factor,
        beta_fast, beta_slow, mscale, mscale_all_dim)
    cos, sin = rope_cos_sin(positions, inv_freq, attention_factor[0])  # (L, r/2) or (B, L, r/2)
    if positions.ndim == 2:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, L, r/2): broadcast over heads
    rotated = rotate(x[..., :rotary_dim], cos, sin, interleaved)
    return np.concatenate([rotated, x[..., rotary_dim:]], axis=-1)


def rotary_width(head_dim, partial_rotary_factor):
    """int(head_dim * partial_rotary_factor): the leading channels that are rotated; even, > 0."""
    positive("partial_rotary_factor", partial_rotary_factor)
    if partial_rotary_factor > 1:
        raise InputError(f"partial_rotary_factor: must be in (0, 1], got {partial_rotary_factor}")
    width = int(head_dim * partial_rotary_factor)
    if width == 0 or width % 2:
        raise InputError(f"partial_rotary_factor: gives {width} rotary channels of {head_dim}; "
                         "need an even number > 0")
    return width


def check_positions(name, positions, batch, length):
    """Integer positions >= 0 of shape (L,) or (B, L)."""
    positions = int_array(name, positions, low=0)
    if positions.shape not in ((length,), (batch, length)):
        raise InputError(f"{name}: expected shape ({length},) or ({batch}, {length}), "
                         f"got {positions.shape}")
    return positions


def _even(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value <= 0 or value % 2:
        raise InputError(f"{name}: must be a positive even integer, got {value!r}")
