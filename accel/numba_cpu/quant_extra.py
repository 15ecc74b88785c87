"""Power-of-two quantization and the W8A16 matmul as numba.njit loops
(reference: llmref.ref.quant_extra). Argument checks and layouts are shared with the reference."""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.quant_extra import SQRT_HALF, log2_args, log2_levels, w8a16_args


@numba.njit(cache=True)
def _log2_slices(x, levels, codes, scale, x_hat):
    """Per row r of x (S, n): scale[r] = max|x| (1 if 0), then per element
    e = round(log2 |x|/s) from the frexp mantissa, code = sign (e + L) or 0 below e_min = 1 - L."""
    for r in range(x.shape[0]):
        amax = 0.0
        for j in range(x.shape[1]):
            amax = max(amax, abs(x[r, j]))
        scale[r] = amax if amax > 0 else 1.0
        s = scale[r]
        for j in range(x.shape[1]):
            ratio = abs(x[r, j]) / s
            c = 0
            if ratio > 0:
                m, p = math.frexp(ratio)  # ratio = m 2^p, m in [0.5, 1)
                e = p - 1 if m < SQRT_HALF else p
                if e >= 1 - levels:
                    c = e + levels
                    if x[r, j] < 0:
                        c = -c
            codes[r, j] = c
            x_hat[r, j] = 0.0 if c == 0 else math.copysign(math.ldexp(s, abs(c) - levels), c)


def log2_quantize(x, bits=4, granularity="tensor", axis=0):
    x, bits, (slices, restore_codes, restore_scale) = log2_args(x, bits, granularity, axis)
    slices = widen(slices)  # (S, n) in the compute dtype
    codes = np.empty(slices.shape, np.int8)
    x_hat = np.empty_like(slices)
    scale = np.empty(slices.shape[0], slices.dtype)
    _log2_slices(slices, log2_levels(bits), codes, scale, x_hat)
    return (restore_codes(codes), restore_scale(scale).astype(x.dtype),
            restore_codes(x_hat).astype(x.dtype))


@numba.njit(cache=True)
def _w8a16(x, w_q, scales, g, y):
    """y[m, n] = sum_k x[m, k] * (w_q[n, k] * scales[n, k // G]): each group's dot product with
    the integer codes first, then scaled once (the same value up to rounding); float64
    accumulators, at least as accurate as the float32 accumulation the spec asks for."""
    for m in range(x.shape[0]):
        for n in range(w_q.shape[0]):
            acc = 0.0
            for grp in range(scales.shape[1]):
                part = 0.0
                for k in range(grp * g, (grp + 1) * g):
                    part += x[m, k] * w_q[n, k]
                acc += part * scales[n, grp]
            y[m, n] = acc


def w8a16_matmul(x, w_q, scales, group_size=0):
    x, w_q, scales, g = w8a16_args(x, w_q, scales, group_size)
    xw = widen(x)  # (M, K) in float32 (float64 for float64 inputs)
    sw = np.ascontiguousarray(np.asarray(scales), dtype=xw.dtype)
    y = np.empty((x.shape[0], w_q.shape[0]), xw.dtype)
    _w8a16(xw, np.ascontiguousarray(w_q), sw, g, y)
    return y.astype(x.dtype)
