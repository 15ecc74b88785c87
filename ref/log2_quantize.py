"""Power-of-two (logarithmic) quantization (specs/log2_quantize.yaml), and the near-boundary
model of a float32 evaluation (ref/_quant.py describes the model).

The float arithmetic runs in the precision of the float input; integer codes are exact.
"""
import numpy as np

from llmref.dtypes import UNIT_ROUNDOFF
from llmref.errors import InputError
from llmref.ref._quant import gamma, is_power_of_two, representable, slice_layout, tie_interval
from llmref.validate import float_array, integer

SQRT_HALF = 0.7071067811865476  # 2^-1/2: log2 m < -1/2  <=>  m < 2^-1/2
LOG2_GRANULARITIES = ("tensor", "channel")


def log2_quantize_args(x, bits, granularity, axis):
    """Validated (x, bits, layout) of log2_quantize, layout = slice_layout(...): every backend
    checks through this before any kernel runs."""
    bits = integer("bits", bits, low=2, high=8)
    x = float_array("x", x, min_ndim=1)
    if x.size == 0:
        raise InputError(f"x: has no elements (shape {x.shape}); a scale needs at least one")
    if granularity not in LOG2_GRANULARITIES:
        raise InputError(f"granularity: must be one of {LOG2_GRANULARITIES}, got {granularity!r}")
    return x, bits, slice_layout(x, granularity, axis, 0)


def log2_quantize(x, bits=4, granularity="tensor", axis=0):
    """Quantize x to sign(x) * s * 2^e and return (codes, scale, x_hat).

    s = max|x| over the slice (1 for an all-zero slice);  r = |x| / s  in [0, 1]
    e = round(log2 r) (log domain, see log2_round);  e_min = 1 - L,  L = 2^(b-1) - 1
    code  = sign(x) * (e + L)  if e >= e_min,  else 0   (r < 2^(e_min - 1/2) flushes to zero)
    x_hat = sign(code) * s * 2^(|code| - L)  (0 for code 0);  x = 0 gives code 0, x_hat +0.
    """
    x, bits, (slices, restore_codes, restore_scale) = log2_quantize_args(x, bits, granularity, axis)
    amax = np.abs(slices).max(axis=1)  # (S,)
    scale = np.where(amax == 0, x.dtype.type(1), amax).astype(x.dtype)
    r = np.abs(slices) / scale[:, None]  # (S, n), in [0, 1]
    codes = restore_codes(log2_codes(r, log2_levels(bits), slices < 0)).astype(np.int8)
    scale = restore_scale(scale)
    return codes, scale, log2_dequantize(codes, scale, bits)


def log2_dequantize(codes, scale, bits):
    """x_hat = sign(code) * scale * 2^(|code| - L), 0 for code 0; scale broadcasts against codes."""
    levels = log2_levels(bits)
    mag = np.abs(codes.astype(np.int64))
    power = np.ldexp(np.ones((), scale.dtype), mag - levels)  # exact powers of two
    return np.where(codes == 0, 0, np.sign(codes) * power * scale).astype(scale.dtype)


def log2_levels(bits):
    """L = 2^(b-1) - 1 magnitude levels: one sign bit, code 0 reserved for zero.
    Exponents relative to the scale run over [e_min, 0] with e_min = 1 - L."""
    return 2 ** (bits - 1) - 1


def log2_round(r):
    """round(log2 r) for r > 0, rounded in the log domain, exactly:
    r = m 2^p with m in [0.5, 1) (frexp, exact), log2 r = p + log2 m, log2 m in [-1, 0),
    so round(log2 r) = p - 1 if m < 2^-1/2 else p. log2 r = k + 1/2 would need r = 2^k sqrt 2,
    which no float is, so there are no ties."""
    m, p = np.frexp(r)
    return np.where(m.astype(np.float64) < SQRT_HALF, p - 1, p).astype(np.int64)


def log2_codes(r, levels, negative):
    """Codes sign(x) (e + L) for r = |x| / s (0 where r = 0 or e < e_min = 1 - L)."""
    nonzero = r > 0
    with np.errstate(divide="ignore"):
        e = np.where(nonzero, log2_round(np.where(nonzero, r, 1)), -levels)
    keep = nonzero & (e >= 1 - levels)
    return np.where(keep, np.where(negative, -1, 1) * (e + levels), 0)


# ----------------------------------------------------------------------------- ties

def log2_ties(dtype, x, bits=4, granularity="tensor", axis=0):
    """{codes, x_hat: (near_tie, alternative)} of a `dtype` evaluation of log2_quantize.

    No value is exactly on a boundary (2^(k+1/2) is irrational), but a dtype evaluation may
    decide a value close to one the other way. Relative to r = |x| / s (s a maximum, exact):
      r' = |x| / s or |x| * (1/s): gamma_2 r (0 where s is a power of two and r a dtype value);
      the constant 2^-1/2 compared with the frexp mantissa is a dtype value: u;
      or, for round(log2 r'): log2 to within 1 ulp, 2 u |log2 r| in the log domain, that is
      2 ln(2) u |log2 r| relative to r.
    So r' lies within r (gamma_k + u + 2 ln(2) u |log2 r|) of r; where that interval holds a
    boundary 2^(k+1/2) the exponent (and the code, or the flush to zero at e_min) may differ.
    """
    x, bits, (slices, restore_codes, restore_scale) = log2_quantize_args(x, bits, granularity, axis)
    amax = np.abs(slices).max(axis=1)
    scale = np.where(amax == 0, 1.0, amax)[:, None]
    r = np.abs(slices) / scale  # (S, n)
    u = UNIT_ROUNDOFF[dtype]
    exact = is_power_of_two(scale) & representable(r, dtype)
    with np.errstate(divide="ignore"):
        log_term = 2 * np.log(2) * u * np.where(r > 0, np.abs(np.log2(np.where(r > 0, r, 1))), 0)
    relative = np.where(exact, 0.0, gamma(2, dtype)) + u + log_term
    levels, negative = log2_levels(bits), slices < 0
    codes = log2_codes(r, levels, negative)
    near, alt = tie_interval(lambda v: log2_codes(v, levels, negative), r * (1 - relative),
                             np.minimum(r * (1 + relative), 1.0), codes)  # r <= 1 by definition
    codes_alt = np.where(near, alt, codes)
    x_hat = log2_dequantize(codes, scale, bits)
    x_hat_alt = log2_dequantize(codes_alt, scale, bits)
    return {"codes": (restore_codes(near), restore_codes(codes_alt).astype(np.int8)),
            "x_hat": (restore_codes(near & (x_hat_alt != x_hat)), restore_codes(x_hat_alt))}
