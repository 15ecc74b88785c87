"""Power-of-two quantization and the W8A16 matmul as numba.cuda kernels
(reference: llmref.ref.quant_extra).

log2_quantize: one thread per slice finds its absmax, then one thread per element writes its
code and dequantized value. w8a16_matmul: one thread per output y[m, n], looping over K with
the int8 code dequantized in a register. Outputs go into guarded buffers.
"""
import math

import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import widen
from llmref.backends import simulated
from llmref.ref.quant_extra import SQRT_HALF, log2_args, log2_levels, w8a16_args

THREADS = 32 if simulated() else 128
TILE = 8 if simulated() else 16


@cuda.jit
def _slice_absmax(x, scale):
    """Thread r: scale[r] = max |x[r, :]|, 1 for an all-zero slice."""
    r = cuda.grid(1)
    if r >= x.shape[0]:
        return
    amax = 0.0
    for j in range(x.shape[1]):
        amax = max(amax, abs(x[r, j]))
    scale[r] = amax if amax > 0 else 1.0


@cuda.jit
def _log2_codes(x, scale, levels, codes, x_hat):
    """Thread (r, j): e = round(log2 |x|/s) from the frexp mantissa; code sign (e + L) or 0."""
    r, j = cuda.grid(2)
    if r >= x.shape[0] or j >= x.shape[1]:
        return
    s = scale[r]
    ratio = abs(x[r, j]) / s
    c = 0
    if ratio > 0:
        p = math.floor(math.log2(ratio)) + 1  # ratio = m 2^p, m in [0.5, 1), log2 only estimates p
        m = ratio / 2.0 ** p
        if m >= 1.0:  # log2 rounded up across a power of two
            m *= 0.5
            p += 1
        elif m < 0.5:
            m *= 2.0
            p -= 1
        e = p - 1 if m < SQRT_HALF else p
        if e >= 1 - levels:
            c = e + levels
            if x[r, j] < 0:
                c = -c
    codes[r, j] = c
    x_hat[r, j] = 0.0 if c == 0 else math.copysign(s * 2.0 ** (abs(c) - levels), c)


def _guarded(shape, dtype):
    """A device buffer with guard regions, and its interior viewed as `shape`."""
    size = int(np.prod(shape))
    d_buf = cuda.to_device(guarded_host_buffer(size, dtype))
    return d_buf, interior(d_buf, size).reshape(shape)


def _fetch(d_buf, shape, what):
    size = int(np.prod(shape))
    buf = d_buf.copy_to_host()
    check_guards(buf, size, what)
    return interior(buf, size).reshape(shape)


def log2_quantize(x, bits=4, granularity="tensor", axis=0):
    x, bits, (slices, restore_codes, restore_scale) = log2_args(x, bits, granularity, axis)
    slices = widen(slices)  # (S, n) in the compute dtype
    rows, n = slices.shape
    d_x = cuda.to_device(slices)
    d_scale = cuda.device_array(rows, slices.dtype)
    _slice_absmax[(rows + THREADS - 1) // THREADS, THREADS](d_x, d_scale)
    d_codes_buf, d_codes = _guarded((rows, n), np.int8)
    d_hat_buf, d_hat = _guarded((rows, n), slices.dtype)
    grid = ((rows + TILE - 1) // TILE, (n + TILE - 1) // TILE)
    _log2_codes[grid, (TILE, TILE)](d_x, d_scale, log2_levels(bits), d_codes, d_hat)
    codes = _fetch(d_codes_buf, (rows, n), "numba-cuda log2_quantize codes")
    x_hat = _fetch(d_hat_buf, (rows, n), "numba-cuda log2_quantize x_hat")
    return (restore_codes(codes), restore_scale(d_scale.copy_to_host()).astype(x.dtype),
            restore_codes(x_hat).astype(x.dtype))


@cuda.jit
def _w8a16(x, w_q, scales, g, y):
    """Thread (m, n): y[m, n] = sum over groups of scales[n, grp] * sum_k x[m, k] w_q[n, k]."""
    m, n = cuda.grid(2)
    if m >= x.shape[0] or n >= w_q.shape[0]:
        return
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
    shape = (x.shape[0], w_q.shape[0])
    d_buf, d_y = _guarded(shape, xw.dtype)
    grid = ((shape[0] + TILE - 1) // TILE, (shape[1] + TILE - 1) // TILE)
    _w8a16[grid, (TILE, TILE)](cuda.to_device(xw), cuda.to_device(np.ascontiguousarray(w_q)),
                               cuda.to_device(sw), g, d_y)
    return _fetch(d_buf, shape, "numba-cuda w8a16_matmul").astype(x.dtype)
