"""Power-of-two (logarithmic) quantization, the W8A16 weight-only matmul and a per-layer
mixed-precision plan (specs/log2_quantize.yaml, w8a16_matmul.yaml, mixed_precision_plan.yaml).
Linear quantization, packing and the other matmuls are in ref/quant.py.

The float arithmetic runs in the precision of the float input; integer codes are exact.
"""
import numpy as np

from llmref.dtypes import UNIT_ROUNDOFF
from llmref.errors import InputError
from llmref.ref.quant import (check_bits, gamma, is_power_of_two, pack_int2, pack_int4,
                              representable, slice_layout, tie_interval)
from llmref.validate import float_array, int_array

SQRT_HALF = 0.7071067811865476  # 2^-1/2: log2 m < -1/2  <=>  m < 2^-1/2


# ----------------------------------------------------------------------------- log2 quantizer

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


LOG2_GRANULARITIES = ("tensor", "channel")


def log2_args(x, bits, granularity, axis):
    """Validated (x, bits, layout) of log2_quantize, layout = slice_layout(...): every backend
    checks through this before any kernel runs."""
    bits = check_bits(bits, 2, 8)
    x = float_array("x", x, min_ndim=1)
    if x.size == 0:
        raise InputError(f"x: has no elements (shape {x.shape}); a scale needs at least one")
    if granularity not in LOG2_GRANULARITIES:
        raise InputError(f"granularity: must be one of {LOG2_GRANULARITIES}, got {granularity!r}")
    return x, bits, slice_layout(x, granularity, axis, 0)


def log2_codes(r, levels, negative):
    """Codes sign(x) (e + L) for r = |x| / s (0 where r = 0 or e < e_min = 1 - L)."""
    nonzero = r > 0
    with np.errstate(divide="ignore"):
        e = np.where(nonzero, log2_round(np.where(nonzero, r, 1)), -levels)
    keep = nonzero & (e >= 1 - levels)
    return np.where(keep, np.where(negative, -1, 1) * (e + levels), 0)


def log2_quantize(x, bits=4, granularity="tensor", axis=0):
    """Quantize x to sign(x) * s * 2^e and return (codes, scale, x_hat).

    s = max|x| over the slice (1 for an all-zero slice);  r = |x| / s  in [0, 1]
    e = round(log2 r) (log domain, see log2_round);  e_min = 1 - L,  L = 2^(b-1) - 1
    code  = sign(x) * (e + L)  if e >= e_min,  else 0   (r < 2^(e_min - 1/2) flushes to zero)
    x_hat = sign(code) * s * 2^(|code| - L)  (0 for code 0);  x = 0 gives code 0, x_hat +0.
    """
    x, bits, (slices, restore_codes, restore_scale) = log2_args(x, bits, granularity, axis)
    amax = np.abs(slices).max(axis=1)  # (S,)
    scale = np.where(amax == 0, x.dtype.type(1), amax).astype(x.dtype)
    r = np.abs(slices) / scale[:, None]  # (S, n), in [0, 1]
    codes = restore_codes(log2_codes(r, log2_levels(bits), slices < 0)).astype(np.int8)
    scale = restore_scale(scale)
    return codes, scale, log2_dequantize(codes, scale, bits)


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
    x, bits, (slices, restore_codes, restore_scale) = log2_args(x, bits, granularity, axis)
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


def log2_dequantize(codes, scale, bits):
    """x_hat = sign(code) * scale * 2^(|code| - L), 0 for code 0; scale broadcasts against codes."""
    levels = log2_levels(bits)
    mag = np.abs(codes.astype(np.int64))
    power = np.ldexp(np.ones((), scale.dtype), mag - levels)  # exact powers of two
    return np.where(codes == 0, 0, np.sign(codes) * power * scale).astype(scale.dtype)


# ----------------------------------------------------------------------------- W8A16

def w8_groups(k, group_size):
    """Scale groups per row: 1 (per output channel) for group_size 0, else K / group_size."""
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 0:
        raise InputError(f"group_size: must be 0 (per channel) or a positive integer, got {group_size!r}")
    if group_size == 0:
        return 1, k
    if k % group_size:
        raise InputError(f"group_size: {group_size} does not divide K={k}")
    return k // group_size, int(group_size)


def w8a16_args(x, w_q, scales, group_size):
    """Validated (x, w_q, scales, G) of w8a16_matmul, G the group length (K for group_size 0):
    every backend checks through this before any kernel runs."""
    x = float_array("x", x, ndim=2)
    if 0 in x.shape:
        raise InputError(f"x: has shape {x.shape}; M and K must be at least 1")
    w_q = int_array("w_q", w_q, ndim=2)
    if w_q.dtype != np.int8:
        raise InputError(f"w_q: expected int8 codes, got {w_q.dtype}")
    if w_q.shape[0] == 0:
        raise InputError(f"w_q: has shape {w_q.shape}; N must be at least 1")
    if w_q.shape[1] != x.shape[1]:
        raise InputError(f"w_q: has K={w_q.shape[1]}, x has K={x.shape[1]}")
    groups, g = w8_groups(x.shape[1], group_size)
    scales = float_array("scales", scales, ndim=2)
    if scales.shape != (w_q.shape[0], groups):
        raise InputError(f"scales: has shape {scales.shape}, expected (N, groups) = "
                         f"{(w_q.shape[0], groups)}")
    return x, w_q, scales, g


def dequantize_w8(w_q, scales, g):
    """W[n, k] = w_q[n, k] * scales[n, k // G]  (signed int8 codes, no zero-point)."""
    return w_q.astype(scales.dtype) * np.repeat(scales, g, axis=1)  # (N, K)


def w8a16_matmul(x, w_q, scales, group_size=0):
    """y = x @ W^T,  W[n, k] = w_q[n, k] * scales[n, k // G]  (G = K for group_size 0).

    x: (M, K) activations; w_q: (N, K) int8 (nn.Linear layout); scales: (N, K/G), one per
    output channel and group. Computed in x's precision (float32 for half inputs, y rounded
    once to x's dtype).
    """
    x, w_q, scales, g = w8a16_args(x, w_q, scales, group_size)
    work = np.float64 if x.dtype == np.float64 else np.float32
    w = dequantize_w8(w_q, scales.astype(work), g)  # (N, K)
    return (x.astype(work) @ w.T).astype(x.dtype)


# ----------------------------------------------------------------------------- mixed precision

PLAN_BITS = (2, 4, 8)  # widths with a canonical byte packing (ref/quant.py: pack_int2, pack_int4)


def quantize_groups(w, bits, group_size):
    """Asymmetric per-group quantization along the last axis of w (N, K), unsigned codes:
    scale = (max - min) / (2^b - 1) (1 if max = min),  zero = clamp(round(-min / scale), 0, 2^b - 1)
    q = clamp(round_half_even(w / scale) + zero, 0, 2^b - 1).  Returns q (N, K), scale, zero (N, K/G).
    """
    qmax = 2 ** bits - 1
    groups = w.reshape(w.shape[0], -1, group_size)  # (N, K/G, G)
    lo, hi = groups.min(axis=2), groups.max(axis=2)  # (N, K/G)
    scale = np.where(hi == lo, w.dtype.type(1), (hi - lo) / w.dtype.type(qmax))
    zero = np.clip(np.rint(-lo / scale), 0, qmax).astype(np.int64)
    q = np.clip(np.rint(groups / scale[..., None]).astype(np.int64) + zero[..., None], 0, qmax)
    return q.reshape(w.shape), scale, zero


def pack_codes(q, bits):
    """Codes -> bytes along the last axis: int2 four per byte, int4 two per byte (low bits
    first, ref/quant.py), int8 one per byte."""
    if bits == 2:
        return pack_int2(q)
    if bits == 4:
        return pack_int4(q)
    return q.astype(np.uint8)


def check_plan(layer_shapes, layers, bits, group_size):
    """Validate the plan against the layers; an error names layer_shapes, layers, bits or group_size."""
    layer_shapes = int_array("layer_shapes", layer_shapes, ndim=2, low=1)
    if layer_shapes.shape[1] != 2:
        raise InputError(f"layer_shapes: expected (L, 2) rows of (N, K), got {layer_shapes.shape}")
    n_layers = layer_shapes.shape[0]
    for name, values in (("layers", layers), ("bits", bits), ("group_size", group_size)):
        if not isinstance(values, (list, tuple)) or len(values) != len(layers):
            raise InputError(f"{name}: expected a list as long as layers, got {values!r}")
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
            raise InputError(f"{name}: expected integers, got {values!r}")
    if sorted(layers) != list(range(n_layers)):
        raise InputError(f"layers: must name every layer 0..{n_layers - 1} once, got {layers!r}")
    for layer, b, g in zip(layers, bits, group_size):
        if b not in PLAN_BITS:
            raise InputError(f"bits: layer {layer} has {b!r}, must be one of {PLAN_BITS}")
        n, k = layer_shapes[layer]
        if isinstance(g, bool) or not isinstance(g, int) or g < 1 or k % g or (g * b) % 8:
            raise InputError(f"group_size: layer {layer} has {g!r}, must divide K={k} and fill "
                             f"whole bytes at {b} bits")
    return layer_shapes


def mixed_precision_plan(weights, layer_shapes, layers, bits, group_size):
    """Quantize each layer at its own (bits, group_size) and account for every stored byte.

    weights: every layer's (N, K) matrix flattened and concatenated, in layer order;
    layer_shapes: (L, 2) int64 rows (N, K); the plan: layers[i] is quantized at bits[i]
    (2, 4 or 8) with groups of group_size[i] along K (see quantize_groups).
    Stored per layer: codes packed along K, ceil-free since G b is a multiple of 8
    (data = N K b / 8), fp16 scales (2 N K / G bytes), zero-points packed like the codes
    (N (K / G) b / 8 bytes, K / G padded up to whole bytes per row).
    Returns packed (all layers' code bytes, layer order), scales (float, layer order), zeros
    (uint8, packed zero-points), layer_bytes (L, 4) int64 rows [data, scales, zeros, total],
    total_bytes (1,) int64.
    """
    weights = float_array("weights", weights, ndim=1)
    layer_shapes = check_plan(layer_shapes, layers, bits, group_size)
    sizes = layer_shapes[:, 0] * layer_shapes[:, 1]
    if weights.shape[0] != sizes.sum():
        raise InputError(f"weights: has {weights.shape[0]} elements, layer_shapes need {sizes.sum()}")
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    plan = dict(zip(layers, zip(bits, group_size)))
    packed, scales, zeros, layer_bytes = [], [], [], []
    for layer, (n, k) in enumerate(layer_shapes):
        b, g = plan[layer]
        w = weights[offsets[layer]:offsets[layer + 1]].reshape(n, k)  # (N, K)
        q, scale, zero = quantize_groups(w, b, g)
        data = pack_codes(q, b)  # (N, K b / 8)
        zero_bytes = pack_codes(pad_groups(zero, b), b)  # (N, ceil(K/G b / 8))
        counts = [data.size, 2 * scale.size, zero_bytes.size]
        layer_bytes.append(counts + [sum(counts)])
        packed.append(data.reshape(-1))
        scales.append(scale.reshape(-1))
        zeros.append(zero_bytes.reshape(-1))
    layer_bytes = np.array(layer_bytes, dtype=np.int64)
    return (np.concatenate(packed), np.concatenate(scales).astype(weights.dtype),
            np.concatenate(zeros), layer_bytes, layer_bytes[:, 3:].sum(axis=0))


def pad_groups(zero, bits):
    """Pad each row of zero-points (N, K/G) with code 0 to a whole number of bytes."""
    per_byte = 8 // bits
    extra = -zero.shape[1] % per_byte
    return np.pad(zero, ((0, 0), (0, extra)))  # (N, ceil(K/G / per_byte) * per_byte)


# ----------------------------------------------------------------------------- case generators

def w8a16_case(rng, M, K, N, GS=0, SCALE_LOW=0.001, SCALE_HIGH=0.02):
    """Random int8 codes over the full range [-128, 127] and positive scales (N, K/G)."""
    groups = 1 if GS == 0 else K // GS
    return {"x": rng.normal(size=(M, K)),
            "w_q": rng.integers(-128, 128, size=(N, K)).astype(np.int8),
            "scales": rng.uniform(SCALE_LOW, SCALE_HIGH, size=(N, groups))}


def mixed_plan_case(rng, SHAPES):
    """Weights for layers of the given (N, K) shapes, std 0.02 like initialised LLM weights."""
    shapes = np.array(SHAPES, dtype=np.int64).reshape(-1, 2)
    weights = [rng.normal(0.0, 0.02, size=int(n * k)) for n, k in shapes]
    return {"weights": np.concatenate(weights), "layer_shapes": shapes}
