"""Rotary position embedding (RoPE) and its frequency scalings (specs/rope.yaml,
rope_inv_freq.yaml).

Precision: the reference computes inverse frequencies, angles pos * inv_freq and their
cos/sin in float64 whatever the activation dtype; only the rotation x*cos + rot(x)*sin runs in
the precision of x. Real implementations (HF transformers, Meta's llama, vLLM) compute the
angles in float32, never narrower (in float16/bfloat16 the angle at position 4095 is off by a
large fraction of a turn); the error such an angle carries is modelled, per element, by the
bound functions at the end of this module (rope_inv_freq_bound, rope_bound), which the specs
name as their `tolerance.bound`.

The scaling parameters travel together as one RopeScaling; the entry points take them as
keyword arguments named as in the specs.
"""
import math
from dataclasses import dataclass

import numpy as np

from llmref.dtypes import UNIT_ROUNDOFF, accumulation_dtype
from llmref.errors import InputError
from llmref.validate import float_array, int_array, integer, positive

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")


@dataclass(frozen=True)
class RopeScaling:
    """How the inverse frequencies are scaled (HF rope_parameters): rope_type and what it reads.

      base                              rope_theta (every type)
      factor                            context scaling factor (linear, dynamic, yarn, llama3)
      original_max_position_embeddings  the pre-training context L0 (dynamic, yarn, llama3)
      low_freq_factor, high_freq_factor llama3's band edges
      beta_fast, beta_slow, truncate    yarn's correction range, rounded to integers or not
      mscale, mscale_all_dim            yarn's attention factor (DeepSeek); 0 = unset
    """
    rope_type: str = "default"
    base: float = 10000.0
    factor: float = 1.0
    original_max_position_embeddings: int = 4096
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 0.0
    mscale_all_dim: float = 0.0
    truncate: bool = True


def rope(x, positions, *, interleaved=False, partial_rotary_factor=1.0, **scaling):
    """Rotary position embedding of x (B, H, L, D) at positions (L,) or (B, L):

      r = int(D * partial_rotary_factor);  x[..., :r] rotated by angle pos * inv_freq
      (inv_freq from rope_inv_freq for the RopeScaling fields in `scaling`), cos/sin scaled by
      the attention factor; x[..., r:] passes through unchanged.

    For rope_type 'dynamic' the sequence length is max(positions) + 1.
    """
    x, cos, sin = rope_tables(x, positions, partial_rotary_factor=partial_rotary_factor,
                              **scaling)  # cos, sin (Bp, 1, L, r/2)
    r = 2 * cos.shape[-1]
    return np.concatenate([rotate(x[..., :r], cos, sin, interleaved), x[..., r:]], axis=-1)


def rope_tables(x, positions, *, partial_rotary_factor=1.0, **scaling):
    """Validated x and the float64 cos/sin tables of its positions, attention factor applied:
    (Bp, 1, L, r/2), Bp = 1 for shared positions (L,) or B for (B, L); broadcast over heads."""
    x, positions, r = rope_args(x, positions, partial_rotary_factor)
    inv_freq, attention_factor = rope_inv_freq(rotary_dim=r, seq_len=rope_seq_len(positions),
                                               **scaling)
    per_sequence = positions if positions.ndim == 2 else positions[None]  # (Bp, L)
    cos, sin = rope_cos_sin(per_sequence, inv_freq, attention_factor[0])  # (Bp, L, r/2)
    return x, cos[:, None], sin[:, None]


def rope_args(x, positions, partial_rotary_factor):
    """Validated (x (B, H, L, D), positions (L,) or (B, L), rotary width r); every backend
    checks through this (and rope_inv_freq_args, via rope_tables) before any kernel runs."""
    x = float_array("x", x, ndim=4)
    if x.shape[-1] < 2:
        raise InputError(f"x: head dim {x.shape[-1]} leaves no channel pair to rotate")
    positions = int_array("positions", positions, low=0)
    batch, length = x.shape[0], x.shape[2]
    if positions.shape not in ((length,), (batch, length)):
        raise InputError(f"positions: expected shape ({length},) or ({batch}, {length}), "
                         f"got {positions.shape}")
    return x, positions, rotary_width(x.shape[-1], partial_rotary_factor)


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


def rope_seq_len(positions):
    """The sequence length dynamic scaling sees: max(positions) + 1 (0 for no positions)."""
    return int(positions.max()) + 1 if positions.size else 0


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


def rope_inv_freq(*, rotary_dim=8, seq_len=0, **scaling):
    """The rotary inverse frequencies (rotary_dim/2,) and the cos/sin attention factor (1,),
    in float64, for one scaling (the RopeScaling fields, HF modeling_rope_utils
    ROPE_INIT_FUNCTIONS semantics):

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
    return inverse_frequencies(*rope_inv_freq_args(rotary_dim, seq_len, scaling))


def rope_inv_freq_args(rotary_dim, seq_len, scaling: dict):
    """Validated (rotary_dim, seq_len, RopeScaling(**scaling))."""
    even_width("rotary_dim", rotary_dim)
    s = RopeScaling(**scaling)
    if s.rope_type not in ROPE_TYPES:
        raise InputError(f"rope_type: {s.rope_type!r} is not one of {ROPE_TYPES}")
    positive("base", s.base)
    positive("factor", s.factor)
    positive("original_max_position_embeddings", s.original_max_position_embeddings)
    seq_len = integer("seq_len", seq_len, low=0)
    if s.rope_type == "dynamic" and rotary_dim == 2:
        raise InputError("rotary_dim: dynamic scaling raises to d/(d-2) and needs d > 2")
    return int(rotary_dim), seq_len, s


def even_width(name, value):
    """A positive even integer (a width made of channel pairs)."""
    if integer(name, value, low=1) % 2:
        raise InputError(f"{name}: must be a positive even integer, got {value!r}")


def powers(base, exponents):
    """base ** e for each e of exponents (float64), through the C library's pow one Python float
    at a time. NumPy's vectorised pow differs from it in the last bit on CPUs with AVX-512 (5
    of the 64 exponents 2i/128 for base 10000), and an angle p * inv_freq multiplies that bit
    by the position: goldens made with it would depend on the machine that made them."""
    return np.array([base ** float(e) for e in exponents], dtype=np.float64).reshape(np.shape(exponents))


def inverse_frequencies(d, seq_len, s: RopeScaling):
    """rope_inv_freq on validated arguments: (inv_freq (d/2,), attention_factor (1,))."""
    exponent = np.arange(0, d, 2, dtype=np.float64) / d  # (d/2,): 2i/d
    inv_freq = 1.0 / powers(s.base, exponent)
    attention_factor = 1.0
    if s.rope_type == "linear":
        inv_freq = inv_freq / s.factor
    elif s.rope_type == "dynamic":
        length = max(seq_len, s.original_max_position_embeddings)
        scaled_base = s.base * (s.factor * length / s.original_max_position_embeddings
                                - (s.factor - 1)) ** (d / (d - 2))
        inv_freq = 1.0 / powers(scaled_base, exponent)
    elif s.rope_type == "yarn":
        ramp = np.clip(yarn_ramp(d, s)[0], 0.0, 1.0)
        inv_freq = inv_freq * (1.0 - ramp) + (inv_freq / s.factor) * ramp
        if s.mscale and s.mscale_all_dim:
            attention_factor = yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor,
                                                                                s.mscale_all_dim)
        else:
            attention_factor = yarn_mscale(s.factor)
    elif s.rope_type == "llama3":
        inv_freq = _llama3_inv_freq(inv_freq, s)
    return inv_freq, np.array([attention_factor], dtype=np.float64)  # (1,)


def yarn_mscale(scale, mscale=1.0):
    """mscale(s, m) = 0.1 * m * ln(s) + 1 for s > 1, else 1 (YaRN, Peng et al. 2023, eq. 22)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_ramp(d, s: RopeScaling):
    """(ramp before clamping (d/2,), lo, hi): ramp_i = (i - lo) / (hi - lo) over the correction
    range [lo, hi] of beta_fast and beta_slow rotations over the original context. Dims
    rotating more than beta_fast times keep their frequency (ramp 0), fewer than beta_slow
    times are interpolated (ramp 1)."""
    def correction_dim(rotations):
        return d * math.log(s.original_max_position_embeddings / (rotations * 2 * math.pi)) \
            / (2 * math.log(s.base))

    low, high = correction_dim(s.beta_fast), correction_dim(s.beta_slow)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero
    return (np.arange(d // 2, dtype=np.float64) - low) / (high - low), low, high


def _llama3_inv_freq(inv_freq, s: RopeScaling):
    """Llama 3.1 frequency-dependent scaling (meta-llama llama-models apply_scaling)."""
    original_len = s.original_max_position_embeddings
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = original_len / s.low_freq_factor
    high_freq_wavelen = original_len / s.high_freq_factor
    smooth = (original_len / wavelen - s.low_freq_factor) / (s.high_freq_factor
                                                             - s.low_freq_factor)
    smoothed = (1 - smooth) * inv_freq / s.factor + smooth * inv_freq
    out = np.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(medium, smoothed, out)


# ----------------------------------------------------------------------------------------
# Conditioning bounds: the error an angle computed in floating point carries.
#
# Every implementation of record computes inverse frequencies, angles and cos/sin in float32
# or wider, whatever the activation dtype: HF transformers (modeling_rope_utils
# ROPE_INIT_FUNCTIONS build inv_freq in float32; LlamaRotaryEmbedding.forward multiplies
# float32 positions by it and takes cos/sin in float32), Meta's llama (precompute_freqs_cis:
# float32 freqs, torch.outer, torch.polar) and vLLM (RotaryEmbedding._compute_inv_freq and
# _compute_cos_sin_cache in float32). So an evaluation at float32, float16 or bfloat16 allows
# the error of float32 angles, and one at float64 that of float64 angles: u_angle is u(float64)
# at float64 and u(float32) otherwise. Relative errors below are in units of that u.

LIBM_ERROR = 4.0  # pow, cos, sin within 2 ulps = 4 u (glibc's and SLEEF's u10 functions: 1 ulp)


def angle_roundoff(dtype):
    """u_angle: the unit roundoff of the precision angles are computed in at `dtype`."""
    return UNIT_ROUNDOFF[accumulation_dtype(dtype)]


def rope_inv_freq_error(u, d, seq_len, s: RopeScaling):
    """Relative error (d/2,) of each inverse frequency computed the way HF does, with unit
    roundoff u, first order in u (e_i = 2i/d, d = rotary_dim, f = factor, L0 = original context):

      default  e_i = fl(2i/d) is off by <= e_i u, which base^e turns into e_i ln(base) u; the
               power adds LIBM_ERROR u and the reciprocal u:     p_i = e_i ln(base) + 5
      linear   one division by f more:                            p_i + 1
      dynamic  base' = base t^(d/(d-2)), t = f L/L0 - (f-1) formed in float32: t is off by
               (2 (t+f-1)/t + 1) u, the power multiplies that by d/(d-2) and adds LIBM_ERROR u,
               the product base * . one u: beta = d/(d-2) (2 (t+f-1)/t + 1) + 5; then
               base'^e_i is off by e_i (ln base' + beta) + LIBM_ERROR, the reciprocal u
      yarn     extrap = 1/base^e (p_i), interp = 1/(f base^e) (p_i + 1), blended by the ramp
               weight w (computed 1 - (1 - ramp)): two products and a sum add 2; inside the
               ramp band (0 < ramp < 1, where the blend is not a copy) the weights carry the
               ramp's error dr (u ramp, plus 2 u ramp + u |lo| / (hi - lo) when lo and hi are
               not integers) and two roundings, which the blend amplifies by
               kappa_i = extrap_i (1 - 1/f) / inv_i (up to f - 1, where inv ~ interp):
               p_i + 3 + kappa_i (dr/u + 1) + 1
      llama3   outside the band inv or inv/f (p_i, p_i + 1); inside, the weight
               s = (L0/wavelen - lf)/(hf - lf) with wavelen = 2 pi / inv (p_i + 2) and
               L0/wavelen (p_i + 3) is off by ds = u (r (p_i + 3)/(hf - lf) + 3 |s|),
               r = L0/wavelen, and the blend (1-s) inv/f + s inv adds 5 and kappa_i ds/u,
               kappa_i = inv_i (1 - 1/f) / smoothed_i. Elements within ds of the band edges
               count as inside: the branches agree at the edges, so a branch flip costs no
               more than the weight's error.
    Returns the relative error itself (not in units of u)."""
    e = np.arange(0, d, 2, dtype=np.float64) / d  # (d/2,)
    plain = e * math.log(s.base) + LIBM_ERROR + 1
    if s.rope_type == "dynamic":
        length = max(seq_len, s.original_max_position_embeddings)
        t = s.factor * length / s.original_max_position_embeddings - (s.factor - 1)
        beta = d / (d - 2) * (2 * (t + s.factor - 1) / t + 1) + LIBM_ERROR + 1
        return u * (e * (math.log(s.base * t ** (d / (d - 2))) + beta) + LIBM_ERROR + 1)
    if s.rope_type in ("default", "linear"):
        return u * (plain + (s.rope_type == "linear"))
    inv, _ = inverse_frequencies(d, seq_len, s)
    plain_inv = 1.0 / powers(s.base, e)
    if s.rope_type == "yarn":
        raw, low, high = yarn_ramp(d, s)
        if s.truncate:  # integer lo, hi: the quotient's rounding only; edges exact
            dr = u * np.abs(raw)
            band = (raw > 0) & (raw < 1)
        else:
            dr = u * (3 * np.abs(raw) + abs(low) / (high - low))
            band = (raw > -dr) & (raw < 1 + dr)
        kappa = plain_inv * (1 - 1 / s.factor) / inv
        return u * (plain + 3 + np.where(band, kappa * (dr / u + 1) + 1, 0.0))
    # llama3
    r = s.original_max_position_embeddings * plain_inv / (2 * math.pi)  # L0 / wavelen
    weight = (r - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    ds = u * (r * (plain + 3) / (s.high_freq_factor - s.low_freq_factor) + 3 * np.abs(weight))
    band = (weight > -ds) & (weight < 1 + ds)
    kappa = plain_inv * (1 - 1 / s.factor) / inv
    return u * np.where(band, plain + 5 + kappa * ds / u, plain + 1)


def rope_inv_freq_bound(dtype, *, rotary_dim=8, seq_len=0, **scaling):
    """Allowance per inverse frequency at `dtype`: inv_i * rope_inv_freq_error(u_angle) (the
    derivation is that function's); the attention factor is a Python float everywhere."""
    d, seq_len, s = rope_inv_freq_args(rotary_dim, seq_len, scaling)
    inv, _ = inverse_frequencies(d, seq_len, s)
    return {"inv_freq": inv * rope_inv_freq_error(angle_roundoff(dtype), d, seq_len, s)}


def rope_bound(dtype, x, positions, *, interleaved=False, partial_rotary_factor=1.0, **scaling):
    """Allowance per rotated element at `dtype`, for angles computed in u = u_angle:

      |dy| <= a |(x1, x2)| u (theta_i (p_i + 2) + 5 sqrt(2))     on both elements of pair i

    theta_i = p * inv_i carries inv_i's relative error p_i u (rope_inv_freq_error) plus one
    rounding of the product and one of the position (exact below 2^24): |dtheta| <=
    theta_i (p_i + 2) u. Rotating the pair by theta + dtheta instead of theta moves it along a
    chord of its circle, of length 2 a |(x1, x2)| |sin(dtheta/2)| <= a |(x1, x2)| |dtheta|
    (exactly, not to first order), a the attention factor. The tables themselves add cos and
    sin within LIBM_ERROR u and the product by a one u each: |(dc, ds)| <= 5 sqrt(2) a u,
    which moves the pair by at most |(x1, x2)| times that. The rotation's own products and
    sum are the spec's ulps. Pass-through channels get 0."""
    x, positions, r = rope_args(x, positions, partial_rotary_factor)
    u = angle_roundoff(dtype)
    r, seq_len, s = rope_inv_freq_args(r, rope_seq_len(positions), scaling)
    inv, attention_factor = inverse_frequencies(r, seq_len, s)
    error = rope_inv_freq_error(u, r, seq_len, s)  # (r/2,)
    theta = positions.astype(np.float64)[..., None] * inv  # (L, r/2) or (B, L, r/2)
    per_angle = u * (theta * (error / u + 2) + 5 * math.sqrt(2)) * attention_factor[0]
    if positions.ndim == 2:
        per_angle = per_angle[:, None]  # (B, 1, L, r/2)
    if interleaved:
        a, b = x[..., 0:r:2], x[..., 1:r:2]
    else:
        a, b = x[..., :r // 2], x[..., r // 2:r]
    pair = np.hypot(a, b) * per_angle  # (B, H, L, r/2)
    rotated = np.stack([pair, pair], axis=-1).reshape(pair.shape[:-1] + (r,)) if interleaved \
        else np.concatenate([pair, pair], axis=-1)
    return {"y": np.concatenate([rotated, np.zeros(x.shape[:-1] + (x.shape[-1] - r,))], axis=-1)}
