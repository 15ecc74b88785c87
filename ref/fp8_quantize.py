"""Per-tensor scaled FP8, e4m3fn and e5m2 (specs/fp8_quantize.yaml), with llmref's own FP8
rounding (fp8_round: exact integer operations, never a library cast whose behaviour changes
between releases) and the tie model of a float32 evaluation (ref/_quant.py describes the model).
"""
from dataclasses import dataclass

import numpy as np

from llmref.errors import InputError
from llmref.ref._quant import gamma, is_power_of_two, representable, tie_interval
from llmref.validate import float_array


@dataclass(frozen=True)
class FP8Format:
    """An 8-bit float: sign, `exponent_bits`, `mantissa_bits`, exponent bias. Codes above
    max_code (the largest finite magnitude) are overflow_code; infinities become inf_code and
    NaN nan_code (sign bit added). OCP 8-bit Floating Point Specification (OFP8) rev. 1.0."""
    name: str
    exponent_bits: int
    mantissa_bits: int
    bias: int
    max_code: int
    overflow_code: int
    inf_code: int
    nan_code: int


FP8_FORMATS = {
    # e4m3fn: no infinities; S.1111.111 is NaN, so 448 = S.1111.110 is the largest finite value
    "e4m3": FP8Format("e4m3fn", 4, 3, 7, max_code=0x7E, overflow_code=0x7F, inf_code=0x7F, nan_code=0x7F),
    # e5m2: IEEE 754-like, S.11111.00 = inf, S.11111.xx (xx != 0) NaN
    "e5m2": FP8Format("e5m2", 5, 2, 15, max_code=0x7B, overflow_code=0x7C, inf_code=0x7C, nan_code=0x7E),
}


def fp8_quantize_args(x, fmt):
    """Validated x (at least 1-D, not empty) of fp8_quantize, fmt one of FP8_FORMATS."""
    fp8_format(fmt)
    x = float_array("x", x, min_ndim=1)
    if x.size == 0:
        raise InputError(f"x: has no elements (shape {x.shape}); the scale needs at least one")
    return x


def fp8_quantize(x, fmt="e4m3"):
    """Per-tensor scaled FP8: scale = max|x| / F (F = 448 for e4m3fn, 57344 for e5m2; 1 if x = 0),
    bits = fp8_round(x / scale) (round to nearest even), x_hat = value(bits) * scale.
    Returns (scale (1,), bits uint8, x_hat)."""
    x = fp8_quantize_args(x, fmt)
    amax = np.abs(x).max()
    scale = amax / x.dtype.type(fp8_max(fmt)) if amax > 0 else x.dtype.type(1)
    bits = fp8_round((x / scale).astype(np.float64), fmt)  # |x / scale| <= F (1 + 2u) < F + half ulp
    x_hat = fp8_value(bits, fmt).astype(x.dtype) * scale
    return np.array([scale], dtype=x.dtype), bits, x_hat.astype(x.dtype)


def fp8_format(fmt):
    """The FP8Format named by fmt ("e4m3" or "e5m2")."""
    if fmt not in tuple(FP8_FORMATS):
        raise InputError(f"fmt: must be one of {tuple(FP8_FORMATS)}, got {fmt!r}")
    return FP8_FORMATS[fmt]


def fp8_max(fmt):
    """The largest finite value: 448 (e4m3fn), 57344 (e5m2)."""
    return float(fp8_value(FP8_FORMATS[fmt].max_code, fmt))


def fp8_value(bits, fmt):
    """FP8 codes (uint8) -> their float64 values, from the format definition:
    field 0: (-1)^s (mantissa / 2^m) 2^(1 - bias) (subnormal); otherwise
    (-1)^s (1 + mantissa / 2^m) 2^(field - bias); e4m3fn S.1111.111 and e5m2 S.11111.xx are NaN
    (e5m2 S.11111.00 is inf)."""
    f = FP8_FORMATS[fmt] if isinstance(fmt, str) else fmt
    b = np.asarray(bits, dtype=np.int64)
    m = f.mantissa_bits
    sign = np.where(b & 0x80, -1.0, 1.0)
    field, mantissa = (b & 0x7F) >> m, b & ((1 << m) - 1)
    magnitude = np.where(field == 0, np.ldexp(mantissa.astype(np.float64), 1 - f.bias - m),
                         np.ldexp((mantissa + (1 << m)).astype(np.float64), field - f.bias - m))
    top = field == (1 << f.exponent_bits) - 1
    if f.inf_code == f.nan_code:  # e4m3fn: only the all-ones code is special
        magnitude = np.where((b & 0x7F) == f.nan_code, np.nan, magnitude)
    else:
        magnitude = np.where(top, np.where(mantissa == 0, np.inf, np.nan), magnitude)
    return sign * magnitude


def fp8_round(x, fmt):
    """float64 values -> FP8 codes, round to nearest, ties to even, directly (no intermediate
    format), with exact integer operations on the bit patterns:
        x = (-1)^s M 2^(E - 52)                 M the 53-bit significand of a finite float64
        q = max(E, 1 - bias) - m                 the FP8 quantum at x's binade (m mantissa bits)
        N = round_half_even(M 2^(E - 52 - q))    an exact shift and a remainder test
        code = (q + m + bias) << m | N mod 2^m   (exponent field 0 when N < 2^m: a subnormal);
                                                  N = 2^(m+1) carries into the next binade
    A code above the largest finite one overflows: e4m3fn to NaN (it has no infinities: |x| > 464
    rounds past 448, 464 itself to 448), e5m2 to inf (|x| >= 61440, IEEE). NaN -> NaN (0x7F
    e4m3fn, 0x7E e5m2), inf -> NaN (e4m3fn) or inf (e5m2); the sign is kept (-0.0 -> 0x80).
    """
    f = FP8_FORMATS[fmt] if isinstance(fmt, str) else fmt
    bits = np.asarray(x, dtype=np.float64).view(np.uint64)
    sign = (bits >> np.uint64(63)).astype(np.int64)
    biased = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    fraction = (bits & np.uint64((1 << 52) - 1)).astype(np.int64)
    m = f.mantissa_bits
    normal = biased > 0
    significand = np.where(normal, fraction | (1 << 52), fraction)
    exponent = np.where(normal, biased - 1023, -1022)
    quantum = np.maximum(exponent, 1 - f.bias) - m
    shift = np.minimum(52 + quantum - exponent, 62)  # >= 52 - m; past 54 everything rounds to 0
    kept = significand >> shift
    remainder = significand & ((np.int64(1) << shift) - 1)
    half = np.int64(1) << (shift - 1)
    n = kept + ((remainder > half) | ((remainder == half) & (kept & 1 == 1)))
    carry = n == (1 << (m + 1))
    n = np.where(carry, 1 << m, n)
    quantum = quantum + carry
    field = np.where(n >= (1 << m), quantum + m + f.bias, 0)
    code = np.where(field > (1 << f.exponent_bits) - 1, f.overflow_code,
                    (field << m) | (n & ((1 << m) - 1)))
    code = np.where(code > f.max_code, f.overflow_code, code)
    special = biased == 0x7FF
    code = np.where(special, np.where(fraction != 0, f.nan_code, f.inf_code), code)
    return ((sign << 7) | code).astype(np.uint8)


# ----------------------------------------------------------------------------- ties

def fp8_ties(dtype, x, fmt="e4m3"):
    """{bits, x_hat: (near_tie, alternative)} of a `dtype` evaluation of fp8_quantize.

    v = x / S, S = max|x| / F: a dtype implementation rounds S once (0 where S is a dtype value
    computed exactly) and forms x / S' or x * (1/S') (2 roundings), so |v' - v| <= gamma_k |v|,
    k = 3 (2 for an exact S, 0 where S is a power of two and v a dtype value). Where that
    interval holds a midpoint between two FP8 values the code may take the other one.
    """
    x = fp8_quantize_args(x, fmt)
    amax = np.abs(x).max()
    scale = amax / fp8_max(fmt) if amax > 0 else 1.0
    v = x / scale
    exact_scale = amax == 0 or bool(representable(scale, dtype) & (scale * fp8_max(fmt) == amax))
    exact_v = exact_scale & bool(is_power_of_two(scale)) & representable(v, dtype)
    spread = gamma(np.where(exact_v, 0, 2 + (not exact_scale)), dtype) * np.abs(v)
    bits = fp8_round(v, fmt)
    low, high = np.where(spread > 0, v - spread, v), np.where(spread > 0, v + spread, v)  # -0.0 + 0 is +0.0
    near, alt = tie_interval(lambda w: fp8_round(w, fmt), low, high, bits)
    x_hat, x_hat_alt = fp8_value(bits, fmt) * scale, fp8_value(alt, fmt) * scale
    return {"bits": (near, alt.astype(np.uint8)), "x_hat": (near & (x_hat_alt != x_hat), x_hat_alt)}
