"""Wrong log2-quantizer, W8A16 and mixed-precision variants seen in the wild; each must fail
its audit."""
import numpy as np

from llmref.ref import quant_extra as ref
from llmref.ref.quant import slice_layout


def _log2_with(x, bits, granularity, axis, exponent, clamp):
    """log2_quantize with the exponent rule `exponent(r)` and optionally no underflow clamp."""
    x = np.asarray(x)
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, 0)  # (S, n)
    amax = np.abs(slices).max(axis=1)
    scale = np.where(amax == 0, x.dtype.type(1), amax).astype(x.dtype)
    levels = ref.log2_levels(bits)
    r = np.abs(slices) / scale[:, None]
    nonzero = r > 0
    e = np.where(nonzero, exponent(np.where(nonzero, r, 1)), -levels)
    keep = nonzero & (e >= 1 - levels) if clamp else nonzero
    codes = np.where(keep, np.where(slices < 0, -1, 1) * (e + levels), 0)
    codes = restore_codes(codes).astype(np.int8)
    scale = restore_scale(scale)
    return codes, scale, ref.log2_dequantize(codes, scale, bits)


def log2_truncated_exponent(x, bits=4, granularity="tensor", axis=0):
    """floor(log2 r) instead of round: every value rounds down to the power of two below it."""
    return _log2_with(x, bits, granularity, axis,
                      lambda r: np.floor(np.log2(r)).astype(np.int64), True)


def log2_linear_rounding(x, bits=4, granularity="tensor", axis=0):
    """Nearest power of two in the linear domain (boundary 1.5 * 2^k instead of sqrt(2) * 2^k)."""
    def nearest_linear(r):
        low = np.floor(np.log2(r)).astype(np.int64)
        return np.where(r >= 1.5 * np.ldexp(1.0, low), low + 1, low)

    return _log2_with(x, bits, granularity, axis, nearest_linear, True)


def log2_no_underflow_clamp(x, bits=4, granularity="tensor", axis=0):
    """Exponents below e_min are kept: small values get codes of the wrong sign or magnitude
    instead of flushing to zero."""
    return _log2_with(x, bits, granularity, axis, ref.log2_round, False)


def w8a16_scales_per_input_channel(x, w_q, scales, group_size=0):
    """Per-channel scales applied along K (the input channel) instead of N: W[n, k] = w_q[n, k] s[k]."""
    x = np.asarray(x)
    work = np.float64 if x.dtype == np.float64 else np.float32
    s = np.asarray(scales).astype(work)[:, 0]  # (N,) read as if it were (K,)
    w = np.asarray(w_q).astype(work) * s[None, :]  # (N, K), needs N == K
    return (x.astype(work) @ w.T).astype(x.dtype)


def w8a16_codes_as_uint8(x, w_q, scales, group_size=0):
    """int8 codes reinterpreted as uint8: -1 becomes 255."""
    x = np.asarray(x)
    work = np.float64 if x.dtype == np.float64 else np.float32
    g = x.shape[1] if group_size == 0 else group_size
    w = ref.dequantize_w8(np.asarray(w_q).view(np.uint8), np.asarray(scales).astype(work), g)
    return (x.astype(work) @ w.T).astype(x.dtype)


def mixed_plan_round_half_away(weights, layer_shapes, layers, bits, group_size):
    """The plan with roundf (half away from zero) for the zero-points and the codes."""
    def roundf(v):
        return np.sign(v) * np.floor(np.abs(v) + 0.5)

    def quantize_groups(w, b, g):
        qmax = 2 ** b - 1
        groups = w.reshape(w.shape[0], -1, g)
        lo, hi = groups.min(axis=2), groups.max(axis=2)
        scale = np.where(hi == lo, 1.0, (hi - lo) / qmax)
        zero = np.clip(roundf(-lo / scale), 0, qmax).astype(np.int64)
        q = np.clip(roundf(groups / scale[..., None]).astype(np.int64) + zero[..., None], 0, qmax)
        return q.reshape(w.shape), scale, zero

    saved = ref.quantize_groups
    try:
        ref.quantize_groups = quantize_groups
        return ref.mixed_precision_plan(weights, layer_shapes, layers, bits, group_size)
    finally:
        ref.quantize_groups = saved


def mixed_plan_zeros_not_counted(weights, layer_shapes, layers, bits, group_size):
    """The zero-point bytes are stored but left out of the byte counts."""
    packed, scales, zeros, layer_bytes, _ = ref.mixed_precision_plan(
        weights, layer_shapes, layers, bits, group_size)
    layer_bytes = layer_bytes.copy()
    layer_bytes[:, 3] -= layer_bytes[:, 2]
    layer_bytes[:, 2] = 0
    return packed, scales, zeros, layer_bytes, layer_bytes[:, 3:].sum(axis=0)


def mixed_plan_scales_per_tensor(weights, layer_shapes, layers, bits, group_size):
    """Scale bytes counted as one fp16 scale per tensor instead of one per group."""
    packed, scales, zeros, layer_bytes, _ = ref.mixed_precision_plan(
        weights, layer_shapes, layers, bits, group_size)
    layer_bytes = layer_bytes.copy()
    layer_bytes[:, 1] = 2
    layer_bytes[:, 3] = layer_bytes[:, :3].sum(axis=1)
    return packed, scales, zeros, layer_bytes, layer_bytes[:, 3:].sum(axis=0)
