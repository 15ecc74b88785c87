"""Linear quantization (specs/quantize_linear.yaml): symmetric and affine codes, binary
(XNOR-Net) and ternary (TWN) ones, per tensor, channel or group, with the dequantization and
the tie model of a float32 evaluation (ref/_quant.py describes the model).

The float arithmetic runs in the precision of the float input; integer codes are exact.
Rounding is round-half-to-even (np.rint).
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref._quant import (gamma, is_power_of_two, representable, rounding_bounds,
                               slice_layout, tie_interval)
from llmref.validate import float_array, int_array, integer

SCHEMES = ("symmetric", "affine", "binary", "ternary")
TERNARY_THRESHOLD = 0.7  # TWN: delta = 0.7 * mean|x|


def quantize_linear_args(x, bits, scheme, signed, granularity, axis, group_size):
    """Validated (x, bits, layout) of quantize_linear, layout = slice_layout(...): every backend
    checks through this before any kernel runs."""
    if scheme not in SCHEMES:
        raise InputError(f"scheme: must be one of {SCHEMES}, got {scheme!r}")
    low, high = {"binary": (1, 1), "ternary": (2, 2)}.get(scheme, (2, 8))
    bits = integer("bits", bits, low=low, high=high)
    if not isinstance(signed, (bool, np.bool_)):
        raise InputError(f"signed: must be a bool, got {signed!r}")
    x = float_array("x", x, min_ndim=1)
    if x.size == 0:
        raise InputError(f"x: has no elements (shape {x.shape}); a scale needs at least one")
    return x, bits, slice_layout(x, granularity, axis, group_size)


def quantize_linear(x, bits=8, scheme="symmetric", signed=True, granularity="tensor", axis=0,
                    group_size=0):
    """Quantize x and dequantize it again: (q, scale, zero_point, x_hat).

    symmetric / affine:  q = clamp(round_half_even(x/S) + Z, qmin, qmax),  x_hat = (q - Z) * S
    binary:  q = +1 if x >= 0 else -1,  S = mean|x|,  x_hat = q * S
    ternary: q = sign(x) if |x| > 0.7 mean|x| else 0,  S = mean|x| over |x| > delta
    S and Z have the shape of x with reduced axes kept as 1 (tensor, channel) or the grouped
    axis divided by group_size (group). Dequantize with `dequantize_linear`.
    """
    x, bits, (slices, restore_codes, restore_scale) = quantize_linear_args(
        x, bits, scheme, signed, granularity, axis, group_size)
    qmin, qmax = integer_range(bits, scheme, signed)
    if scheme == "binary":
        scale = binary_params(slices)
        zero = np.zeros(scale.shape, np.int64)
        q = np.where(slices >= 0, 1, -1)
    elif scheme == "ternary":
        delta = ternary_threshold(slices)
        scale = ternary_params(slices, delta)
        zero = np.zeros(scale.shape, np.int64)
        q = ternary_codes(slices, delta)
    else:
        scale, zero = linear_params(slices, bits, scheme, signed)
        q = quantize_codes(slices, scale, zero, qmin, qmax)
    q = restore_codes(q).astype(np.int32)
    scale = restore_scale(scale).astype(x.dtype)
    zero = restore_scale(zero).astype(np.int32)
    return q, scale, zero, dequantize_linear(q, scale, zero, granularity, axis, group_size)


def dequantize_linear(q, scale, zero_point, granularity="tensor", axis=0, group_size=0):
    """x_hat = (q - zero_point) * scale, in the dtype of scale."""
    q = int_array("q", q)
    scale = float_array("scale", scale, ndim=q.ndim)
    zero_point = int_array("zero_point", zero_point, ndim=q.ndim)
    expected = scale_shape(q.shape, granularity, axis, group_size)
    for name, arr in (("scale", scale), ("zero_point", zero_point)):
        if arr.shape != expected:
            raise InputError(f"{name}: has shape {arr.shape}, expected {expected} for "
                             f"{granularity} quantization of shape {q.shape}")
    s = expand_params(scale, q.shape, granularity, axis, group_size)
    z = expand_params(zero_point, q.shape, granularity, axis, group_size)
    return ((q.astype(np.int64) - z).astype(scale.dtype) * s).astype(scale.dtype)


# ----------------------------------------------------------------------------- scales and codes

def integer_range(bits, scheme, signed):
    """(qmin, qmax) of the integer codes.

    symmetric signed:   [-(2^(b-1) - 1), 2^(b-1) - 1]   restricted, so 0 sits in the middle
    symmetric unsigned: [1, 2^b - 1], zero-point 2^(b-1)  (the signed range shifted)
    affine signed:      [-2^(b-1), 2^(b-1) - 1];  affine unsigned: [0, 2^b - 1]
    binary: [-1, 1] (codes -1, +1);  ternary: [-1, 1]
    """
    if scheme in ("binary", "ternary"):
        return -1, 1
    half = 2 ** (bits - 1)
    if scheme == "symmetric":
        return (-(half - 1), half - 1) if signed else (1, 2 * half - 1)
    return (-half, half - 1) if signed else (0, 2 * half - 1)


def linear_params(slices, bits, scheme, signed):
    """Per-slice (scale, zero_point), slices: (S, n).

    symmetric: scale = amax / qmax_pos, zero_point = 0 (signed) or 2^(b-1) (unsigned),
               qmax_pos = 2^(b-1) - 1, amax = max|x|
    affine:    scale = (max - min) / (qmax - qmin)   (min, max of the slice, not widened to 0)
               zero_point = clamp(qmin - round_half_even(min / scale), qmin, qmax)
    A slice with amax = 0 (symmetric) or max = min (affine) gets scale 1.
    """
    qmin, qmax = integer_range(bits, scheme, signed)
    if scheme == "symmetric":
        amax = np.abs(slices).max(axis=1)  # (S,)
        scale = amax / slices.dtype.type(2 ** (bits - 1) - 1)
        scale = np.where(amax == 0, slices.dtype.type(1), scale)
        zero = np.full(scale.shape, 0 if signed else 2 ** (bits - 1), dtype=np.int64)
        return scale, zero
    lo, hi = slices.min(axis=1), slices.max(axis=1)  # (S,)
    scale = (hi - lo) / slices.dtype.type(qmax - qmin)
    scale = np.where(hi == lo, slices.dtype.type(1), scale)
    zero = np.clip(qmin - np.rint(lo / scale).astype(np.int64), qmin, qmax)
    return scale, zero


def binary_params(slices):
    """XNOR-Net: scale = mean|x| over the slice (0 -> 1); codes sign(x) with sign(0) = +1."""
    scale = np.abs(slices).mean(axis=1)
    return np.where(scale == 0, slices.dtype.type(1), scale)


def ternary_threshold(slices):
    """TWN: delta = 0.7 * mean|x| over the slice."""
    return slices.dtype.type(TERNARY_THRESHOLD) * np.abs(slices).mean(axis=1)


def ternary_params(slices, delta):
    """TWN: scale = mean of |x| over the entries with |x| > delta (1 if there are none)."""
    big = np.abs(slices) > delta[:, None]
    count = big.sum(axis=1)
    total = np.where(big, np.abs(slices), 0).sum(axis=1)
    return np.where(count == 0, slices.dtype.type(1), total / np.maximum(count, 1).astype(slices.dtype))


def quantize_codes(slices, scale, zero, qmin, qmax):
    """q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax), per slice row."""
    return np.clip(np.rint(slices / scale[:, None]).astype(np.int64) + zero[:, None], qmin, qmax)


def ternary_codes(slices, delta):
    """TWN codes: +1 where x > delta, -1 where x < -delta, else 0 (strict: |x| = delta gives 0)."""
    return np.where(slices > delta[:, None], 1, np.where(slices < -delta[:, None], -1, 0))


def expand_params(p, shape, granularity, axis, group_size):
    """Broadcast a scale / zero-point array of the layout above to the full shape."""
    if granularity != "group":
        return p
    axis = axis % len(shape)
    return np.repeat(p, group_size, axis=axis)  # (..., n_axis/g, ...) -> (..., n_axis, ...)


def scale_shape(shape, granularity, axis, group_size):
    """The shape of the scale and zero-point arrays for x of `shape` (see slice_layout)."""
    slices, _, restore_scale = slice_layout(np.empty(shape), granularity, axis, group_size)
    return restore_scale(np.empty(slices.shape[0])).shape


# ----------------------------------------------------------------------------- ties

def quantize_linear_ties(dtype, x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                         axis=0, group_size=0):
    """Outputs a correct `dtype` evaluation may round to the other side of a tie:
    {q, zero_point, x_hat (and scale, for ternary): (near_tie, alternative)}.

    Symmetric / affine. The reference rounds t = x / S (S its float64 scale). A dtype
    implementation computes its own scale S' and t' = x / S' or x * (1/S') in dtype:
      S'  = S (1 + s), |s| <= gamma_kS:  kS = 1 (amax / qmax) or 2 ((max - min) / (qmax - qmin)),
            0 where S is exactly a dtype value computed exactly (S * divisor = numerator);
      t'  = t (1 + e), |e| <= gamma_(kS + 2): + 2 for a rounded reciprocal and a rounded product
            (a division alone is 1); e = 0 where S' = S is a power of two and t is a dtype
            value (then x / S and x * (1/S) are exact);
      Z added before rounding (round(x/S + Z), as fbgemm does) rounds once more: u |t + Z|,
            or exactly |fl(t + Z) - (t + Z)| where t' is exact.
    So |t' - t| <= delta = gamma_k |t| (+ the addition term), about c u |x/S| with c = kS + 2:
    3 for symmetric, 4 for affine scales (2 where S is exact, 0 where t is). The zero-point
    rounds t_z = min / S with delta_z = gamma_k |t_z| (the same k): where it is near a tie the
    alternative zero-point shifts every code of its slice, so q and x_hat of that slice take
    the alternative too. An element near its own tie
    in a slice whose zero-point is near one is given one alternative, both flipped; the cases
    hold none (tests/test_quantize_linear.py checks it).

    Ternary. Membership |x| > delta = 0.7 mean|x| flips where ||x| - delta| <= gamma_(n+2) delta
    (n - 1 additions of nonnegative terms, the division by n, the product with 0.7 and the
    rounding of 0.7 itself); the alternative flips every such element of the slice, with the
    scale and x_hat recomputed. Binary codes compare x with 0, exactly: no ties.
    """
    x, bits, (slices, restore_codes, restore_scale) = quantize_linear_args(
        x, bits, scheme, signed, granularity, axis, group_size)
    if scheme == "binary":
        return {}
    if scheme == "ternary":
        return _ternary_ties(dtype, slices, restore_codes, restore_scale)
    qmin, qmax = integer_range(bits, scheme, signed)
    scale, zero = linear_params(slices, bits, scheme, signed)  # (S,)
    near_e, r, near_z, z = linear_tie_decisions(dtype, slices, bits, scheme, signed)
    q = quantize_codes(slices, scale, zero, qmin, qmax)
    q_alt = np.clip(r.astype(np.int64) + z[:, None], qmin, qmax)
    x_hat = (q - zero[:, None]) * scale[:, None]
    x_hat_alt = (q_alt - z[:, None]) * scale[:, None]
    near_q = near_e | near_z[:, None]
    return {"q": (restore_codes(near_q & (q_alt != q)), restore_codes(q_alt).astype(np.int32)),
            "zero_point": (restore_scale(near_z & (z != zero)), restore_scale(z).astype(np.int32)),
            "x_hat": (restore_codes(near_q & (x_hat_alt != x_hat)), restore_codes(x_hat_alt))}


def linear_tie_decisions(dtype, slices, bits, scheme, signed):
    """(near_e, r, near_z, z) for symmetric / affine slices (S, n): which elements' round(x/S)
    and which slices' zero-points are near a tie at `dtype` (see quantize_linear_ties), with
    r = round(x/S) and z = the zero-point, each taking its alternative where near."""
    qmin, qmax = integer_range(bits, scheme, signed)
    scale, zero = linear_params(slices, bits, scheme, signed)
    k_elements, k_zero = quotient_roundings(slices, scale, bits, scheme, signed, dtype)
    t = slices / scale[:, None]  # (S, n)
    low, high = rounding_bounds(t, k_elements, zero[:, None], dtype)
    near_e, r_alt = tie_interval(np.rint, low, high, np.rint(t))
    t_zero = slices.min(axis=1) / scale  # (S,)
    d_zero = gamma(k_zero, dtype) * np.abs(t_zero)

    def zero_point(v):  # Z = clamp(qmin - round(min / S))
        return np.clip(qmin - np.rint(v), qmin, qmax)

    near_z, z_alt = tie_interval(zero_point, t_zero + d_zero, t_zero - d_zero, zero)
    near_z &= scheme == "affine"
    return near_e, np.where(near_e, r_alt, np.rint(t)), near_z, np.where(near_z, z_alt, zero)


def quotient_roundings(slices, scale, bits, scheme, signed, dtype):
    """Roundings k (gamma_k |t|) in a dtype evaluation of t = x / S per element (S, n), and of
    t_z = min / S per slice (S,); see quantize_linear_ties."""
    qmin, qmax = integer_range(bits, scheme, signed)
    if scheme == "symmetric":
        numerator, divisor, k_scale = np.abs(slices).max(axis=1), 2 ** (bits - 1) - 1, 1
    else:
        numerator, divisor, k_scale = slices.max(axis=1) - slices.min(axis=1), qmax - qmin, 2
    degenerate = numerator == 0  # S = 1 by rule
    exact_scale = degenerate | (representable(numerator, dtype) & representable(scale, dtype)
                                & (scale * divisor == numerator))
    inexact = np.where(exact_scale, 0, k_scale) + 2  # (S,)
    exact_t = (exact_scale & is_power_of_two(scale))[:, None] & representable(slices / scale[:, None], dtype)
    exact_tz = exact_scale & is_power_of_two(scale) & representable(slices.min(axis=1) / scale, dtype)
    return np.where(exact_t, 0, inexact[:, None]), np.where(exact_tz, 0, inexact)


def _ternary_ties(dtype, slices, restore_codes, restore_scale):
    """Ternary membership flips near |x| = delta (see quantize_linear_ties)."""
    delta = ternary_threshold(slices)  # (S,)
    spread = gamma(slices.shape[1] + 2, dtype) * delta
    near = np.abs(np.abs(slices) - delta[:, None]) <= spread[:, None]  # (S, n)
    q = ternary_codes(slices, delta)
    big_alt = np.where(near, q == 0, q != 0)
    q_alt = np.where(big_alt, np.where(slices < 0, -1, 1), 0)
    scale = ternary_params(slices, delta)
    count = big_alt.sum(axis=1)
    total = np.where(big_alt, np.abs(slices), 0).sum(axis=1)
    scale_alt = np.where(count == 0, 1.0, total / np.maximum(count, 1))
    touched = near.any(axis=1)
    x_hat, x_hat_alt = q * scale[:, None], q_alt * scale_alt[:, None]
    return {"q": (restore_codes(near), restore_codes(q_alt).astype(np.int32)),
            "scale": (restore_scale(touched), restore_scale(scale_alt)),
            "x_hat": (restore_codes(touched[:, None] & (x_hat_alt != x_hat)), restore_codes(x_hat_alt))}
