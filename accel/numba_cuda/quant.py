"""Linear and NF4 quantization as numba.cuda kernels (references: llmref.ref.quant,
llmref.ref.quant_formats).

Two launches each: one thread per slice (block) computes its scale and zero-point (absmax),
then one thread per element writes its code and dequantized value into guarded buffers.
"""
import math

import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import widen
from llmref.backends import simulated
from llmref.ref.quant import SCHEMES, TERNARY_THRESHOLD, integer_range, quantize_linear_args
from llmref.ref.quant_formats import NF4_CODEBOOK, nf4_args

THREADS = 32 if simulated() else 128
SYMMETRIC, AFFINE, BINARY, TERNARY = range(4)


@cuda.jit(device=True)
def _rint(v):
    """Round half to even."""
    f = math.floor(v)
    diff = v - f
    if diff > 0.5 or (diff == 0.5 and f % 2 != 0):
        return f + 1
    return f


@cuda.jit
def _slice_params(x, scheme, signed, bits, qmin, qmax, scale, zero, delta):
    """Thread r: scale[r], zero[r] and the ternary threshold delta[r] of slice x[r]."""
    r = cuda.grid(1)
    if r >= x.shape[0]:
        return
    n = x.shape[1]
    lo, hi, amax, total = x[r, 0], x[r, 0], 0.0, 0.0
    for j in range(n):
        lo = min(lo, x[r, j])
        hi = max(hi, x[r, j])
        amax = max(amax, abs(x[r, j]))
        total += abs(x[r, j])
    z = 0
    d = 0.0
    if scheme == SYMMETRIC:
        s = amax / (2 ** (bits - 1) - 1) if amax > 0 else 1.0
        z = 0 if signed else 2 ** (bits - 1)
    elif scheme == AFFINE:
        s = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    elif scheme == BINARY:
        s = total / n if total > 0 else 1.0
    else:
        d = TERNARY_THRESHOLD * (total / n)
        big, count = 0.0, 0
        for j in range(n):
            if abs(x[r, j]) > d:
                big += abs(x[r, j])
                count += 1
        s = big / count if count > 0 else 1.0
    scale[r] = s
    if scheme == AFFINE:
        z = min(max(qmin - int(_rint(lo / scale[r])), qmin), qmax)
    zero[r] = z
    delta[r] = d


@cuda.jit
def _codes(x, scheme, qmin, qmax, scale, zero, delta, q, x_hat):
    """Thread (r, j): q[r, j] and x_hat[r, j]."""
    r, j = cuda.grid(2)
    if r >= x.shape[0] or j >= x.shape[1]:
        return
    v, s, z = x[r, j], scale[r], zero[r]
    if scheme == BINARY:
        c = 1 if v >= 0 else -1
    elif scheme == TERNARY:
        c = 1 if v > delta[r] else (-1 if v < -delta[r] else 0)
    else:
        c = min(max(int(_rint(v / s)) + z, qmin), qmax)
    q[r, j] = c
    x_hat[r, j] = (c - z) * s


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


def quantize_linear(x, bits=8, scheme="symmetric", signed=True, granularity="tensor", axis=0,
                    group_size=0):
    x, bits, (slices, restore_codes, restore_scale) = quantize_linear_args(
        x, bits, scheme, signed, granularity, axis, group_size)
    slices = widen(slices)  # (S, n)
    rows, n = slices.shape
    qmin, qmax = integer_range(bits, scheme, signed)
    d_x = cuda.to_device(slices)
    d_scale = cuda.device_array(rows, slices.dtype)
    d_zero = cuda.device_array(rows, np.int32)
    d_delta = cuda.device_array(rows, slices.dtype)
    kind = SCHEMES.index(scheme)
    _slice_params[(rows + THREADS - 1) // THREADS, THREADS](
        d_x, kind, bool(signed), bits, qmin, qmax, d_scale, d_zero, d_delta)
    q_buf, d_q = _guarded((rows, n), np.int32)
    xh_buf, d_xh = _guarded((rows, n), slices.dtype)
    tile = (8, 4) if simulated() else (8, 32)
    grid = ((rows + tile[0] - 1) // tile[0], (n + tile[1] - 1) // tile[1])
    _codes[grid, tile](d_x, kind, qmin, qmax, d_scale, d_zero, d_delta, d_q, d_xh)
    q = _fetch(q_buf, (rows, n), "numba-cuda quantize_linear q")
    x_hat = _fetch(xh_buf, (rows, n), "numba-cuda quantize_linear x_hat")
    return (restore_codes(q), restore_scale(d_scale.copy_to_host()).astype(x.dtype),
            restore_scale(d_zero.copy_to_host()), restore_codes(x_hat).astype(x.dtype))


@cuda.jit
def _nf4_absmax(x, block_size, absmax):
    b = cuda.grid(1)
    if b >= absmax.shape[0]:
        return
    a = 0.0
    for j in range(block_size):
        a = max(a, abs(x[b * block_size + j]))
    absmax[b] = a


@cuda.jit
def _nf4_pairs(x, block_size, book, absmax, packed, x_hat):
    """Thread i: elements 2i (high nibble) and 2i + 1 (low nibble) of byte i."""
    i = cuda.grid(1)
    if i >= packed.shape[0]:
        return
    a = absmax[(2 * i) // block_size]
    divisor = a if a > 0 else 1.0
    pair = 0
    for t in range(2):
        v = x[2 * i + t] / divisor
        best, best_err = 0, abs(v - book[0])
        for c in range(1, 16):
            err = abs(v - book[c])
            if err < best_err:
                best, best_err = c, err
        x_hat[2 * i + t] = book[best] * a
        pair = (pair << 4) | best
    packed[i] = pair


def nf4_quantize(x, block_size=64):
    x = nf4_args(x, block_size)
    xs = widen(x)
    nb, half = x.size // block_size, x.size // 2
    d_x = cuda.to_device(xs)
    d_absmax = cuda.device_array(nb, xs.dtype)
    _nf4_absmax[(nb + THREADS - 1) // THREADS, THREADS](d_x, block_size, d_absmax)
    p_buf, d_packed = _guarded((half,), np.uint8)
    xh_buf, d_xh = _guarded((x.size,), xs.dtype)
    _nf4_pairs[(half + THREADS - 1) // THREADS, THREADS](
        d_x, block_size, cuda.to_device(NF4_CODEBOOK.astype(xs.dtype)), d_absmax, d_packed, d_xh)
    packed = _fetch(p_buf, (half,), "numba-cuda nf4 packed")
    x_hat = _fetch(xh_buf, (x.size,), "numba-cuda nf4 x_hat")
    return packed, d_absmax.copy_to_host().astype(x.dtype), x_hat.astype(x.dtype)
