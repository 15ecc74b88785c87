"""Quantization: linear (symmetric / affine, per tensor, channel or group), binary and ternary,
QAT fake-quant with its straight-through gradient, the canonical INT4 / INT2 packing, and the
W4A16 and W8A8 matmuls, and the GPTQ / AWQ layouts (specs/quantize_linear.yaml, fake_quant.yaml,
int4_layouts.yaml, w4a16_matmul.yaml, w8a8_matmul.yaml). Block and float formats (GGUF, NF4,
FP8) are in ref/quant_formats.py; calibration and memory sizes in ref/quant_calib.py.

The float arithmetic runs in the precision of the float input; integer codes are exact.
Rounding is round-half-to-even (np.rint) unless a format says otherwise.

Tie-aware comparison (the `ties:` functions of the specs, here and in quant_formats.py,
quant_extra.py). An output decided by rounding a computed value v (a code, a byte) can take
one of two values at an evaluation dtype d when v lies close to a tie. Each ties function
derives, from the operations a correct d-precision implementation performs, an interval
[v - delta, v + delta] that contains every value such an implementation can compute, using
Higham's bound for k roundings, gamma_k = k u / (1 - k u) (Accuracy and Stability of
Numerical Algorithms, 2nd ed., Lemma 3.1), u the unit roundoff of d. Operations that are
exact at d (a division by a power of two, a representable difference) add nothing, so an
exact tie computed exactly stays exact and is decided by the spec's rule alone. The rounding
is monotone, so rounding the interval's two ends gives every reachable output: where they
differ the element is near a tie, and the alternative is the end whose value differs from
the reference's (tie_interval).
"""
import numpy as np

from llmref.dtypes import UNIT_ROUNDOFF, round_to
from llmref.errors import InputError
from llmref.validate import axis_index, float_array, int_array, positive

SCHEMES = ("symmetric", "affine", "binary", "ternary")
GRANULARITIES = ("tensor", "channel", "group")
TERNARY_THRESHOLD = 0.7  # TWN: delta = 0.7 * mean|x|


# ----------------------------------------------------------------------------- tie model helpers

def gamma(k, dtype):
    """Higham's gamma_k = k u / (1 - k u): |computed - exact| <= gamma_k |exact| after k
    roundings in `dtype` (elementwise k; 0 for exact operations)."""
    u = UNIT_ROUNDOFF[dtype]
    k = np.asarray(k, dtype=np.float64)
    return k * u / (1 - k * u)


def representable(v, dtype):
    """True where the float64 value v is exactly a value of `dtype`."""
    v = np.asarray(v, dtype=np.float64)
    return round_to(v, dtype).astype(np.float64) == v


def is_power_of_two(v):
    """True where |v| = 2^k (dividing by it, or multiplying by its reciprocal, is exact)."""
    mantissa, _ = np.frexp(np.asarray(v, dtype=np.float64))
    return np.abs(mantissa) == 0.5


def tie_interval(rounding, low, high, expected):
    """(near_tie, alternative) for an output rounding(v) whose argument v is known only to lie
    in [low, high]; rounding is monotone, so its two ends give every reachable output."""
    at_low, at_high = rounding(low), rounding(high)
    near = at_low != at_high
    return near, np.where(at_low != expected, at_low, at_high)


# ----------------------------------------------------------------------------- ranges, slices

def check_bits(bits, low=2, high=8, name="bits"):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not low <= bits <= high:
        raise InputError(f"{name}: must be an integer in [{low}, {high}], got {bits!r}")
    return int(bits)


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


def slice_layout(x, granularity, axis, group_size):
    """View x as (slices, n), every row one slice sharing a scale; return it with two functions
    restoring per-element codes (slices, n) to x.shape and per-slice values (slices,) to the
    scale shape (x.shape with reduced axes set to 1, or the grouped axis set to n_axis/g).

    tensor:  one slice;  channel: one slice per index along `axis`;
    group:   groups of `group_size` consecutive elements along `axis`, one per position of the
             other axes.
    """
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity: must be one of {GRANULARITIES}, got {granularity!r}")
    if granularity == "tensor":
        return (x.reshape(1, -1), lambda q: q.reshape(x.shape),
                lambda s: s.reshape((1,) * x.ndim))
    axis = axis_index("axis", axis, x.ndim)
    if granularity == "channel":
        moved = np.moveaxis(x, axis, 0)  # (n_axis, ...)
        scale_shape = tuple(n if d == axis else 1 for d, n in enumerate(x.shape))
        return (moved.reshape(moved.shape[0], -1),  # (n_axis, rest)
                lambda q: np.moveaxis(q.reshape(moved.shape), 0, axis),
                lambda s: s.reshape(scale_shape))
    n = x.shape[axis]
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise InputError(f"group_size: must be a positive integer, got {group_size!r}")
    if n % group_size:
        raise InputError(f"group_size: {group_size} does not divide axis {axis} of size {n}")
    last = np.moveaxis(x, axis, -1)  # (..., n)
    return (last.reshape(-1, group_size),  # (rest * n/g, g)
            lambda q: np.moveaxis(q.reshape(last.shape), -1, axis),
            lambda s: np.moveaxis(s.reshape(*last.shape[:-1], n // group_size), -1, axis))


def scale_shape(shape, granularity, axis, group_size):
    """The shape of the scale and zero-point arrays for x of `shape` (see slice_layout)."""
    slices, _, restore_scale = slice_layout(np.empty(shape), granularity, axis, group_size)
    return restore_scale(np.empty(slices.shape[0])).shape


# ----------------------------------------------------------------------------- linear quantization

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


def quantize_linear_args(x, bits, scheme, signed, granularity, axis, group_size):
    """Validated (x, bits, layout) of quantize_linear, layout = slice_layout(...): every backend
    checks through this before any kernel runs."""
    if scheme not in SCHEMES:
        raise InputError(f"scheme: must be one of {SCHEMES}, got {scheme!r}")
    low, high = {"binary": (1, 1), "ternary": (2, 2)}.get(scheme, (2, 8))
    bits = check_bits(bits, low, high)
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


def ternary_codes(slices, delta):
    """TWN codes: +1 where x > delta, -1 where x < -delta, else 0 (strict: |x| = delta gives 0)."""
    return np.where(slices > delta[:, None], 1, np.where(slices < -delta[:, None], -1, 0))


# ----------------------------------------------------------------------------- linear ties

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
    hold none (tests/test_quant_ties.py checks it).

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


def rounding_bounds(t, k, zero, dtype):
    """[low, high] around t holding every dtype evaluation of it: gamma_k |t|, plus the
    rounding of adding an integer zero-point before rounding (u |t + Z|, or the exact error of
    that addition where t is exact). Ties of round(t) are tested on this interval."""
    spread = gamma(k, dtype) * np.abs(t)
    added = t + zero
    exact_add = np.abs(round_to(added, dtype).astype(np.float64) - added)
    add_error = np.where(k == 0, exact_add, gamma(1, dtype) * (np.abs(added) + spread))
    spread = spread + np.where(zero == 0, 0.0, add_error)
    return t - spread, t + spread


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


def expand_params(p, shape, granularity, axis, group_size):
    """Broadcast a scale / zero-point array of the layout above to the full shape."""
    if granularity != "group":
        return p
    axis = axis % len(shape)
    return np.repeat(p, group_size, axis=axis)  # (..., n_axis/g, ...) -> (..., n_axis, ...)


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


# ----------------------------------------------------------------------------- QAT fake-quant

def fake_quant_args(x, grad_y, scale, zero_point, quant_min, quant_max):
    """Validated (x, grad_y) of fake_quant: the same shape, a finite positive scale, integer
    zero_point, quant_min < quant_max and quant_min <= zero_point <= quant_max."""
    x = float_array("x", x)
    grad_y = float_array("grad_y", grad_y)
    if grad_y.shape != x.shape:
        raise InputError(f"grad_y: has shape {grad_y.shape}, expected the shape of x {x.shape}")
    positive("scale", scale)
    for name, value in (("zero_point", zero_point), ("quant_min", quant_min), ("quant_max", quant_max)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{name}: must be an integer, got {value!r}")
    if not quant_min < quant_max:
        raise InputError(f"quant_max: must exceed quant_min, got [{quant_min}, {quant_max}]")
    if not quant_min <= zero_point <= quant_max:
        raise InputError(f"zero_point: {zero_point} is outside [{quant_min}, {quant_max}]")
    return x, grad_y


def fake_quant(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """Fake-quantize x and back-propagate grad_y through it: (y, grad_x).

    y      = (clamp(round_half_even(x/scale) + zero_point, quant_min, quant_max) - zero_point) * scale
    grad_x = grad_y * 1[quant_min <= round_half_even(x/scale) + zero_point <= quant_max]
    The straight-through estimator passes the gradient unchanged where the rounded code lies
    inside the range and blocks it where the clamp is active (torch.fake_quantize_per_tensor_affine).
    """
    x, grad_y = fake_quant_args(x, grad_y, scale, zero_point, quant_min, quant_max)
    s = x.dtype.type(scale)
    code = np.rint(x / s) + x.dtype.type(zero_point)  # unclamped code, float
    inside = (code >= quant_min) & (code <= quant_max)
    y = (np.clip(code, quant_min, quant_max) - x.dtype.type(zero_point)) * s
    return y.astype(x.dtype), np.where(inside, grad_y, 0).astype(x.dtype)


def fake_quant_ties(dtype, x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """{y, grad_x: (near_tie, alternative)} of a `dtype` evaluation of fake_quant.

    The reference rounds t = x / S with S the float64 param. A dtype implementation first
    rounds S to dtype (S' = S (1 + s), |s| <= u, s = 0 where S is a dtype value), then forms
    x / S' (1 rounding) or x * (1/S') (2; torch's kernels use inv_scale = 1.0f / scale), so
    |t' - t| <= gamma_k |t| with k = 1 + 2 = 3, 2 for a representable S, 0 for a power of two
    S with t a dtype value (exact). Adding Z before rounding adds u |t + Z| (see
    rounding_bounds). The straight-through mask is decided by the same rounded code, so
    grad_x flips where the alternative code crosses quant_min or quant_max.
    """
    x, grad_y = fake_quant_args(x, grad_y, scale, zero_point, quant_min, quant_max)
    t = x / scale
    exact_scale = bool(representable(scale, dtype))
    exact_t = exact_scale & bool(is_power_of_two(scale)) & representable(t, dtype)
    k = np.where(exact_t, 0, 2 + (not exact_scale))
    low, high = rounding_bounds(t, k, zero_point, dtype)
    near, r_alt = tie_interval(np.rint, low, high, np.rint(t))
    code, code_alt = np.rint(t) + zero_point, r_alt + zero_point
    y = (np.clip(code, quant_min, quant_max) - zero_point) * scale
    y_alt = (np.clip(code_alt, quant_min, quant_max) - zero_point) * scale
    inside = (code >= quant_min) & (code <= quant_max)
    inside_alt = (code_alt >= quant_min) & (code_alt <= quant_max)
    return {"y": (near & (y_alt != y), y_alt),
            "grad_x": (near & (inside_alt != inside), np.where(inside_alt, grad_y, 0.0))}


# ----------------------------------------------------------------------------- packing

def pack_int4(q):
    """Canonical INT4 packing, two codes per byte along the last axis, low nibble first:
    byte[..., j] = q[..., 2j] | q[..., 2j+1] << 4.   q: (..., K) in [0, 16), K even -> (..., K/2)."""
    q = int_array("q", q, min_ndim=1, low=0, high=16)
    if q.shape[-1] % 2:
        raise InputError(f"q: last axis has odd length {q.shape[-1]}; INT4 packs pairs")
    pairs = q.astype(np.uint8).reshape(*q.shape[:-1], -1, 2)  # (..., K/2, 2)
    return pairs[..., 0] | (pairs[..., 1] << 4)


def unpack_int4(packed, k):
    """Inverse of pack_int4: (..., K/2) uint8 -> (..., K) codes in [0, 16)."""
    packed = int_array("packed", packed, min_ndim=1)
    if packed.dtype != np.uint8 or 2 * packed.shape[-1] != k:
        raise InputError(f"packed: expected uint8 with last axis {k // 2} for K={k}, "
                         f"got {packed.dtype} {packed.shape}")
    low, high = packed & 0x0F, packed >> 4
    return np.stack([low, high], axis=-1).reshape(*packed.shape[:-1], k)  # (..., K/2, 2) -> (..., K)


def pack_int2(q):
    """Canonical INT2 packing, four codes per byte, lowest bits first:
    byte[..., j] = q[4j] | q[4j+1] << 2 | q[4j+2] << 4 | q[4j+3] << 6."""
    q = int_array("q", q, min_ndim=1, low=0, high=4)
    if q.shape[-1] % 4:
        raise InputError(f"q: last axis length {q.shape[-1]} is not a multiple of 4")
    quads = q.astype(np.uint8).reshape(*q.shape[:-1], -1, 4)  # (..., K/4, 4)
    return quads[..., 0] | quads[..., 1] << 2 | quads[..., 2] << 4 | quads[..., 3] << 6


def unpack_int2(packed, k):
    """Inverse of pack_int2: (..., K/4) uint8 -> (..., K) codes in [0, 4)."""
    packed = int_array("packed", packed, min_ndim=1)
    if packed.dtype != np.uint8 or 4 * packed.shape[-1] != k:
        raise InputError(f"packed: expected uint8 with last axis {k // 4} for K={k}, "
                         f"got {packed.dtype} {packed.shape}")
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    return ((packed[..., None] >> shifts) & 3).reshape(*packed.shape[:-1], k)


# ----------------------------------------------------------------------------- GPTQ / AWQ layouts

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # bit slot i (shift 4i) holds column 8c + AWQ_ORDER[i]


def _words_from_nibbles(nib):
    """(..., 8) codes -> (...,) int32 words, slot i at bits [4i, 4i+4)."""
    shifts = np.arange(8, dtype=np.uint32) * 4
    return (nib.astype(np.uint32) << shifts).sum(axis=-1, dtype=np.uint32).view(np.int32)


def _nibbles_from_words(words):
    """(...,) int32 words -> (..., 8) codes, slot i from bits [4i, 4i+4)."""
    shifts = np.arange(8, dtype=np.uint32) * 4
    return ((words.view(np.uint32)[..., None] >> shifts) & 0xF).astype(np.uint8)


def to_gptq(q, zeros):
    """Canonical (q (N, K), zeros (N, K/G), both codes 0..15) -> GPTQ v1 (qweight, qzeros).

    qweight: int32 (K/8, N), packed along K, word r holds q[n, 8r + i] at bits 4i.
    qzeros:  int32 (K/G, N/8), packed along N, storing (zero - 1) & 15: the v1 quirk. Readers
             add 1 back, so a zero of 0 is stored as 15 and read as (15 + 1) & 15 = 0.
    """
    n, k = q.shape
    qweight = _words_from_nibbles(q.T.reshape(k // 8, 8, n).transpose(0, 2, 1))  # (K/8, N, 8)
    stored = (zeros.astype(np.int64) - 1) & 0xF  # (N, K/G)
    qzeros = _words_from_nibbles(stored.T.reshape(-1, n // 8, 8))  # (K/G, N/8, 8)
    return qweight, qzeros


def from_gptq(qweight, qzeros):
    """GPTQ v1 (qweight, qzeros) -> canonical (q (N, K), zeros (N, K/G)); zero = (stored+1) & 15."""
    k8, n = qweight.shape
    q = _nibbles_from_words(qweight).transpose(0, 2, 1).reshape(k8 * 8, n).T  # (N, K)
    stored = _nibbles_from_words(qzeros).reshape(qzeros.shape[0], n)  # (K/G, N)
    return np.ascontiguousarray(q), np.ascontiguousarray(((stored.astype(np.int64) + 1) & 0xF).T.astype(np.uint8))


def to_awq(q, zeros):
    """Canonical (q (N, K), zeros (N, K/G)) -> AWQ GEMM (qweight (K, N/8), qzeros (K/G, N/8)),
    packed along N with slot i holding column 8c + AWQ_ORDER[i]; zeros stored as they are."""
    order = np.array(AWQ_ORDER)
    qweight = _words_from_nibbles(q.T.reshape(q.shape[1], -1, 8)[..., order])  # (K, N/8, 8)
    qzeros = _words_from_nibbles(zeros.T.reshape(zeros.shape[1], -1, 8)[..., order])
    return qweight, qzeros


def from_awq(qweight, qzeros):
    """AWQ GEMM -> canonical (q (N, K), zeros (N, K/G)); undo the order with its inverse."""
    inverse = np.argsort(AWQ_ORDER)  # (0, 4, 1, 5, 2, 6, 3, 7)
    q = _nibbles_from_words(qweight)[..., inverse].reshape(qweight.shape[0], -1).T
    z = _nibbles_from_words(qzeros)[..., inverse].reshape(qzeros.shape[0], -1).T
    return np.ascontiguousarray(q), np.ascontiguousarray(z)


# ----------------------------------------------------------------------------- matmuls

def w4a16_args(x, w_packed, scales, zeros, group_size):
    """Validated (x, w_packed, scales, zeros) of w4a16_matmul: every backend checks through
    this before any kernel runs. M, K, N >= 1; group_size an even integer >= 2 dividing K (a
    group is whole bytes of the packed row); w_packed (N, K/2) uint8; scales and zeros
    (N, K/group_size), zeros codes 0..15."""
    x = float_array("x", x, ndim=2)
    m, k = x.shape
    if m == 0 or k == 0:
        raise InputError(f"x: has shape {x.shape}; M and K must be at least 1")
    w_packed = int_array("w_packed", w_packed, ndim=2)
    if w_packed.dtype != np.uint8:
        raise InputError(f"w_packed: expected uint8 bytes, got {w_packed.dtype}")
    if 2 * w_packed.shape[1] != k:
        raise InputError(f"w_packed: has {w_packed.shape[1]} bytes per row; K={k} needs {k / 2:g}")
    n = w_packed.shape[0]
    if n == 0:
        raise InputError(f"w_packed: has shape {w_packed.shape}; N must be at least 1")
    if (isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer))
            or group_size < 2 or group_size % 2):
        raise InputError(f"group_size: must be an even integer >= 2 (whole packed bytes), got {group_size!r}")
    if k % group_size:
        raise InputError(f"group_size: {group_size} does not divide K={k}")
    groups = k // group_size
    scales = float_array("scales", scales, ndim=2)
    if scales.shape != (n, groups):
        raise InputError(f"scales: has shape {scales.shape}, expected (N, K/group_size) = {(n, groups)}")
    zeros = int_array("zeros", zeros, ndim=2, low=0, high=16)
    if zeros.shape != (n, groups):
        raise InputError(f"zeros: has shape {zeros.shape}, expected (N, K/group_size) = {(n, groups)}")
    return x, w_packed, scales, zeros


def dequantize_w4(w_packed, scales, zeros, group_size):
    """W[n, k] = (q[n, k] - zeros[n, k // G]) * scales[n, k // G], q unpacked canonically."""
    k = 2 * w_packed.shape[1]
    q = unpack_int4(w_packed, k).astype(np.int64)  # (N, K)
    z = np.repeat(zeros.astype(np.int64), group_size, axis=1)  # (N, K)
    s = np.repeat(scales, group_size, axis=1)  # (N, K)
    return (q - z) * s


def w4a16_matmul(x, w_packed, scales, zeros, group_size=128):
    """y = x @ W^T with W dequantized from canonical packed INT4 (see dequantize_w4).

    x: (M, K) activations; w_packed: (N, K/2) uint8; scales: (N, K/G); zeros: (N, K/G) codes
    0..15. Products and sums are exact in float64 here; implementations accumulate in float32
    and round y once to the activation dtype.
    """
    x, w_packed, scales, zeros = w4a16_args(x, w_packed, scales, zeros, group_size)
    w = dequantize_w4(w_packed, scales.astype(np.float64), zeros, group_size)  # (N, K)
    return (x.astype(np.float64) @ w.T).astype(x.dtype)


def w8a8_matmul(x_q, w_q, x_scale, w_scale):
    """y = (sum_k x_q[m, k] * w_q[n, k]) * x_scale[m] * w_scale[n]: int8 x int8 with exact
    int32 accumulation (|acc| <= K * 128^2 < 2^31 for K < 2^17), then one float rescale.

    x_q: (M, K) int8 per-token codes; w_q: (N, K) int8 per-channel codes;
    x_scale: (M,); w_scale: (N,). Returns (acc int32 (M, N), y float (M, N)).
    """
    x_q, w_q, x_scale, w_scale = w8a8_args(x_q, w_q, x_scale, w_scale)
    acc = x_q.astype(np.int64) @ w_q.astype(np.int64).T  # (M, N), exact
    y = acc.astype(x_scale.dtype) * x_scale[:, None] * w_scale[None, :]
    return acc.astype(np.int32), y.astype(x_scale.dtype)


def w8a8_args(x_q, w_q, x_scale, w_scale):
    """Validated (x_q, w_q, x_scale, w_scale) of w8a8_matmul; every backend checks through this."""
    x_q = int_array("x_q", x_q, ndim=2, low=-128, high=128)
    w_q = int_array("w_q", w_q, ndim=2, low=-128, high=128)
    if 0 in x_q.shape:
        raise InputError(f"x_q: has shape {x_q.shape}; M and K must be at least 1")
    if w_q.shape[0] == 0:
        raise InputError(f"w_q: has shape {w_q.shape}; N must be at least 1")
    if w_q.shape[1] != x_q.shape[1]:
        raise InputError(f"w_q: has K={w_q.shape[1]}, x_q has K={x_q.shape[1]}")
    if x_q.shape[1] >= 2 ** 17:
        raise InputError(f"x_q: K={x_q.shape[1]} could overflow the int32 accumulator")
    x_scale = float_array("x_scale", x_scale, ndim=1)
    w_scale = float_array("w_scale", w_scale, ndim=1)
    if x_scale.shape[0] != x_q.shape[0]:
        raise InputError(f"x_scale: has {x_scale.shape[0]} entries, expected M={x_q.shape[0]}")
    if w_scale.shape[0] != w_q.shape[0]:
        raise InputError(f"w_scale: has {w_scale.shape[0]} entries, expected N={w_q.shape[0]}")
    return x_q, w_q, x_scale, w_scale


# ----------------------------------------------------------------------------- case generators

def w4a16_case(rng, M, K, N, GS):
    """Random W4A16 operands: codes and zero-points uniform in 0..15, scales ~ 0.01 (fp16-sized)."""
    groups = K // GS
    q = rng.integers(0, 16, size=(N, K))
    return {"x": rng.normal(size=(M, K)),
            "w_packed": pack_int4(q),
            "scales": rng.uniform(0.005, 0.02, size=(N, groups)),
            "zeros": rng.integers(0, 16, size=(N, groups)).astype(np.uint8)}


def w8a8_case(rng, M, K, N, LOW=-128, HIGH=128):
    """Random int8 codes in [LOW, HIGH) with per-token and per-channel scales."""
    return {"x_q": rng.integers(LOW, HIGH, size=(M, K)).astype(np.int8),
            "w_q": rng.integers(LOW, HIGH, size=(N, K)).astype(np.int8),
            "x_scale": rng.uniform(0.001, 0.05, size=M),
            "w_scale": rng.uniform(0.001, 0.05, size=N)}


def int4_layouts(q, zeros):
    """Every 4-bit layout of one quantized weight: canonical INT4 bytes, GPTQ v1 and AWQ GEMM
    tensors (see pack_int4, to_gptq, to_awq). q: (N, K) codes, zeros: (N, K/G) codes, N % 8 = 0,
    K % 8 = 0."""
    q = int_array("q", q, ndim=2, low=0, high=16)
    zeros = int_array("zeros", zeros, ndim=2, low=0, high=16)
    n, k = q.shape
    if n == 0 or k == 0 or n % 8 or k % 8:
        raise InputError(f"q: shape {q.shape} needs N and K multiples of 8 for 32-bit packing")
    if zeros.shape[0] != n or zeros.shape[1] == 0 or k % zeros.shape[1]:
        raise InputError(f"zeros: shape {zeros.shape} does not give whole groups of K={k} per row")
    gptq_qweight, gptq_qzeros = to_gptq(q, zeros)
    awq_qweight, awq_qzeros = to_awq(q, zeros)
    return {"packed": pack_int4(q), "gptq_qweight": gptq_qweight, "gptq_qzeros": gptq_qzeros,
            "awq_qweight": awq_qweight, "awq_qzeros": awq_qzeros}


def int4_layouts_case(rng, N, K, GS):
    """Random codes, with zero-points 0 and 15 present (the GPTQ v1 wrap-around cases)."""
    zeros = rng.integers(0, 16, size=(N, K // GS)).astype(np.uint8)
    zeros.reshape(-1)[:2] = [0, 15]
    return {"q": rng.integers(0, 16, size=(N, K)).astype(np.uint8), "zeros": zeros}
