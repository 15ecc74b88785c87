"""What the quantization families share: the tie model behind their `ties:` functions, the
slice layout of a scale, the canonical INT4 / INT2 byte packing, and C's roundf.

Tie-aware comparison. An output decided by rounding a computed value v (a code, a byte) can
take one of two values at an evaluation dtype d when v lies close to a tie. Each ties function
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
from llmref.validate import axis_index, int_array, integer

GRANULARITIES = ("tensor", "channel", "group")


# ----------------------------------------------------------------------------- tie model

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


def roundf(v):
    """C roundf: round half away from zero, exactly (v - trunc(v) is exact; floor(|v| + 0.5)
    is not, the sum rounds for the largest float below 0.5)."""
    whole = np.trunc(v)
    return whole + np.sign(v) * (np.abs(v - whole) >= 0.5)


# ----------------------------------------------------------------------------- slices sharing a scale

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
    group_size = integer("group_size", group_size, low=1)
    if n % group_size:
        raise InputError(f"group_size: {group_size} does not divide axis {axis} of size {n}")
    last = np.moveaxis(x, axis, -1)  # (..., n)
    return (last.reshape(-1, group_size),  # (rest * n/g, g)
            lambda q: np.moveaxis(q.reshape(last.shape), -1, axis),
            lambda s: np.moveaxis(s.reshape(*last.shape[:-1], n // group_size), -1, axis))


# ----------------------------------------------------------------------------- canonical packing

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
