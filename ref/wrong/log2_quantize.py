"""Wrong power-of-two quantizers seen in the wild (specs/log2_quantize.yaml); each must fail
its audit."""
import numpy as np

from llmref.ref import log2_quantize as ref
from llmref.ref._quant import slice_layout


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
