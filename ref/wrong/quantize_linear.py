"""Wrong linear quantizers seen in the wild (specs/quantize_linear.yaml); each must fail its
audit."""
import numpy as np

from llmref.ref import quantize_linear as ref
from llmref.ref._quant import roundf, slice_layout
from llmref.ref.quantize_linear import dequantize_linear, integer_range


def _linear(x, bits, scheme, signed, granularity, axis, group_size, params, rounding=np.rint,
            qrange=None):
    """quantize_linear with its qparams, rounding or range swapped by the caller (symmetric and
    affine; binary and ternary, which round nothing, are the reference's)."""
    if scheme in ("binary", "ternary"):
        return ref.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
    x = np.asarray(x)
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
    qmin, qmax = qrange or integer_range(bits, scheme, signed)
    scale, zero = params(slices, bits, scheme, signed)
    q = np.clip(rounding(slices / scale[:, None]).astype(np.int64) + zero[:, None], qmin, qmax)
    q = restore_codes(q).astype(np.int32)
    scale = restore_scale(scale).astype(x.dtype)
    zero = restore_scale(zero).astype(np.int32)
    return q, scale, zero, dequantize_linear(q, scale, zero, granularity, axis, group_size)


def quantize_round_half_away(x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                             axis=0, group_size=0):
    """C roundf (half away from zero) for x / S and for the zero-point."""
    def params(slices, bits, scheme, signed):
        scale, zero = ref.linear_params(slices, bits, scheme, signed)
        if scheme == "affine":
            qmin, qmax = integer_range(bits, scheme, signed)
            zero = np.clip(qmin - roundf(slices.min(axis=1) / scale).astype(np.int64), qmin, qmax)
        return scale, zero
    return _linear(x, bits, scheme, signed, granularity, axis, group_size, params, roundf)


def quantize_zero_point_before_rounding(x, bits=8, scheme="symmetric", signed=True,
                                        granularity="tensor", axis=0, group_size=0):
    """q = clamp(round_half_even(x / S + Z)): Z added before rounding (torch.quantize_per_tensor's
    fbgemm kernel), which moves exact ties to the other neighbour when Z is odd."""
    if scheme in ("binary", "ternary"):
        return ref.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
    x = np.asarray(x)
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
    qmin, qmax = integer_range(bits, scheme, signed)
    scale, zero = ref.linear_params(slices, bits, scheme, signed)
    shifted = slices / scale[:, None] + zero[:, None].astype(x.dtype)
    q = np.clip(np.rint(shifted).astype(np.int64), qmin, qmax)
    q = restore_codes(q).astype(np.int32)
    scale = restore_scale(scale).astype(x.dtype)
    zero = restore_scale(zero).astype(np.int32)
    return q, scale, zero, dequantize_linear(q, scale, zero, granularity, axis, group_size)


def quantize_zero_point_unclamped(x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                                  axis=0, group_size=0):
    """Z = qmin - round(min / S) used as is, even outside [qmin, qmax]."""
    def params(slices, bits, scheme, signed):
        scale, zero = ref.linear_params(slices, bits, scheme, signed)
        if scheme == "affine":
            qmin, _ = integer_range(bits, scheme, signed)
            zero = qmin - np.rint(slices.min(axis=1) / scale).astype(np.int64)
        return scale, zero
    return _linear(x, bits, scheme, signed, granularity, axis, group_size, params)


def quantize_full_signed_range(x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                               axis=0, group_size=0):
    """Symmetric over [-2^(b-1), 2^(b-1)-1] with S = absmax / (2^(b-1) - 0.5) (PyTorch qint8)."""
    def params(slices, bits, scheme, signed):
        scale, zero = ref.linear_params(slices, bits, scheme, signed)
        if scheme == "symmetric":
            amax = np.abs(slices).max(axis=1)
            scale = np.where(amax == 0, 1.0, amax / (2 ** (bits - 1) - 0.5))
        return scale, zero
    qrange = (-2 ** (bits - 1), 2 ** (bits - 1) - 1) if scheme == "symmetric" and signed else None
    return _linear(x, bits, scheme, signed, granularity, axis, group_size, params, qrange=qrange)


def quantize_ternary_inclusive(x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                               axis=0, group_size=0):
    """Ternary codes where |x| >= delta (the threshold itself kept) instead of |x| > delta."""
    if scheme != "ternary":
        return ref.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
    x = np.asarray(x)
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
    delta = ref.ternary_threshold(slices)
    big = np.abs(slices) >= delta[:, None]
    q = np.where(big, np.where(slices < 0, -1, 1), 0)
    count = big.sum(axis=1)
    scale = np.where(count == 0, 1.0, np.where(big, np.abs(slices), 0).sum(axis=1) / np.maximum(count, 1))
    q = restore_codes(q).astype(np.int32)
    scale = restore_scale(scale).astype(x.dtype)
    zero = np.zeros(scale.shape, np.int32)
    return q, scale, zero, dequantize_linear(q, scale, zero, granularity, axis, group_size)


def quantize_channel_axis_ignored(x, bits=8, scheme="symmetric", signed=True, granularity="tensor",
                                  axis=0, group_size=0):
    """Per-channel scales always per row (axis 0)."""
    if granularity == "channel":
        axis = 0
    return ref.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
