"""Quantization kernels as numba.njit loops (references: llmref.ref.quant, llmref.ref.quant_formats).

Layouts and argument checks are the reference's (quantize_linear_args, fake_quant_args,
gguf_args, nf4_args, w4a16_args, w8a8_args), run before any kernel; the arithmetic (scales,
zero-points, codes, packing, matmuls) runs in the kernels below.
"""
import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.ref.quant import (SCHEMES, TERNARY_THRESHOLD, fake_quant_args, integer_range,
                              quantize_linear_args, w4a16_args, w8a8_args)
from llmref.ref.quant_formats import BLOCK_BYTES, NF4_CODEBOOK, QK, gguf_args, nf4_args

SYMMETRIC, AFFINE, BINARY, TERNARY = range(4)


# ----------------------------------------------------------------------------- linear

@numba.njit(cache=True)
def _quantize_slices(x, scheme, signed, bits, qmin, qmax, q, scale, zero, x_hat):
    """Per row r of x (S, n): scale[r], zero[r], codes q[r] and x_hat[r] (see ref docstrings)."""
    n = x.shape[1]
    for r in range(x.shape[0]):
        lo, hi, amax, total, delta = x[r, 0], x[r, 0], 0.0, 0.0, 0.0
        for j in range(n):
            lo = min(lo, x[r, j])
            hi = max(hi, x[r, j])
            amax = max(amax, abs(x[r, j]))
            total += abs(x[r, j])
        z = 0
        if scheme == SYMMETRIC:
            s = amax / (2 ** (bits - 1) - 1) if amax > 0 else 1.0
            z = 0 if signed else 2 ** (bits - 1)
        elif scheme == AFFINE:
            s = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
        elif scheme == BINARY:
            s = total / n if total > 0 else 1.0
        else:
            delta = TERNARY_THRESHOLD * (total / n)
            big, count = 0.0, 0
            for j in range(n):
                if abs(x[r, j]) > delta:
                    big += abs(x[r, j])
                    count += 1
            s = big / count if count > 0 else 1.0
        scale[r] = s
        s = scale[r]  # the scale as stored, in x's dtype
        if scheme == AFFINE:
            z = min(max(qmin - int(np.rint(lo / s)), qmin), qmax)
        zero[r] = z
        for j in range(n):
            v = x[r, j]
            if scheme == BINARY:
                c = 1 if v >= 0 else -1
            elif scheme == TERNARY:
                c = 1 if v > delta else (-1 if v < -delta else 0)
            else:
                c = min(max(int(np.rint(v / s)) + z, qmin), qmax)
            q[r, j] = c
            x_hat[r, j] = (c - z) * s


def quantize_linear(x, bits=8, scheme="symmetric", signed=True, granularity="tensor", axis=0,
                    group_size=0):
    x, bits, (slices, restore_codes, restore_scale) = quantize_linear_args(
        x, bits, scheme, signed, granularity, axis, group_size)
    slices = widen(slices)  # (S, n)
    qmin, qmax = integer_range(bits, scheme, signed)
    q = np.empty(slices.shape, np.int32)
    x_hat = np.empty_like(slices)
    scale = np.empty(slices.shape[0], slices.dtype)
    zero = np.empty(slices.shape[0], np.int32)
    _quantize_slices(slices, SCHEMES.index(scheme), bool(signed), bits, qmin, qmax,
                     q, scale, zero, x_hat)
    return (restore_codes(q), restore_scale(scale).astype(x.dtype), restore_scale(zero),
            restore_codes(x_hat).astype(x.dtype))


# ----------------------------------------------------------------------------- fake-quant

@numba.njit(cache=True)
def _fake_quant(x, grad_y, scale, zero_point, qmin, qmax, y, grad_x):
    for i in range(x.size):
        c = np.rint(x[i] / scale) + zero_point
        inside = qmin <= c <= qmax
        y[i] = (min(max(c, qmin), qmax) - zero_point) * scale
        grad_x[i] = grad_y[i] if inside else 0.0


def fake_quant(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    x, grad_y = fake_quant_args(x, grad_y, scale, zero_point, quant_min, quant_max)
    xs, gs = widen(x).reshape(-1), widen(grad_y).reshape(-1)
    y, grad_x = np.empty_like(xs), np.empty_like(gs)
    _fake_quant(xs, gs, xs.dtype.type(scale), zero_point, quant_min, quant_max, y, grad_x)
    return y.reshape(x.shape).astype(x.dtype), grad_x.reshape(x.shape).astype(x.dtype)


# ----------------------------------------------------------------------------- GGUF

@numba.njit(cache=True)
def _gguf_codes(blocks, fmt, d, m, codes):
    """float32 arithmetic of ggml's reference quantizers; fmt 0 = Q4_0, 1 = Q4_1, 2 = Q8_0."""
    for b in range(blocks.shape[0]):
        lo, hi, vmax, amax = blocks[b, 0], blocks[b, 0], np.float32(0), np.float32(0)
        for j in range(QK):
            v = blocks[b, j]
            lo, hi = min(lo, v), max(hi, v)
            if abs(v) > amax:
                amax, vmax = abs(v), v
        if fmt == 0:
            d[b] = vmax / np.float32(-8)
        elif fmt == 1:
            d[b] = (hi - lo) / np.float32(15)
            m[b] = lo
        else:
            d[b] = amax / np.float32(127)
        inv = np.float32(1) / d[b] if d[b] != 0 else np.float32(0)
        for j in range(QK):
            if fmt == 0:
                codes[b, j] = min(15, int(blocks[b, j] * inv + np.float32(8.5)))
            elif fmt == 1:
                codes[b, j] = min(15, int((blocks[b, j] - lo) * inv + np.float32(0.5)))
            else:
                t = blocks[b, j] * inv
                codes[b, j] = int(np.sign(t) * np.floor(abs(t) + np.float32(0.5)))


@numba.njit(cache=True)
def _gguf_dequant(codes, fmt, d, m, out):
    for b in range(codes.shape[0]):
        for j in range(QK):
            if fmt == 0:
                out[b, j] = np.float32(codes[b, j] - 8) * d[b]
            elif fmt == 1:
                out[b, j] = np.float32(codes[b, j]) * d[b] + m[b]
            else:
                out[b, j] = np.float32(codes[b, j]) * d[b]


def gguf_quantize(x, fmt="Q4_0"):
    x = gguf_args(x, fmt)
    blocks = np.ascontiguousarray(x.astype(np.float32).reshape(-1, QK))  # (B, 32)
    nb, kind = blocks.shape[0], ("Q4_0", "Q4_1", "Q8_0").index(fmt)
    d, m = np.zeros(nb, np.float32), np.zeros(nb, np.float32)
    codes = np.empty((nb, QK), np.int64)
    _gguf_codes(blocks, kind, d, m, codes)
    d16, m16 = d.astype("<f2"), m.astype("<f2")  # stored fp16
    out = np.empty((nb, QK), np.float32)
    _gguf_dequant(codes, kind, d16.astype(np.float32), m16.astype(np.float32), out)
    parts = [d16.reshape(-1, 1).view(np.uint8)]
    if fmt == "Q4_1":
        parts.append(m16.reshape(-1, 1).view(np.uint8))
    if fmt == "Q8_0":
        parts.append(codes.astype(np.int8).view(np.uint8))
    else:
        nib = codes.astype(np.uint8)
        parts.append(nib[:, :16] | (nib[:, 16:] << 4))  # element j low, j + 16 high
    packed = np.concatenate(parts, axis=1)
    assert packed.shape[1] == BLOCK_BYTES[fmt]
    return packed, out.reshape(-1).astype(x.dtype)


# ----------------------------------------------------------------------------- NF4

@numba.njit(cache=True)
def _nf4(x, block_size, book, packed, absmax, x_hat):
    for b in range(x.size // block_size):
        a = 0.0
        for j in range(block_size):
            a = max(a, abs(x[b * block_size + j]))
        absmax[b] = a
        divisor = absmax[b] if absmax[b] > 0 else 1.0
        for j in range(0, block_size, 2):
            pair = 0
            for t in range(2):
                i = b * block_size + j + t
                v = x[i] / divisor
                best, best_err = 0, abs(v - book[0])
                for c in range(1, 16):
                    err = abs(v - book[c])
                    if err < best_err:
                        best, best_err = c, err
                x_hat[i] = book[best] * absmax[b]
                pair = (pair << 4) | best
            packed[(b * block_size + j) // 2] = pair


def nf4_quantize(x, block_size=64):
    x = nf4_args(x, block_size)
    xs = widen(x)
    packed = np.empty(x.size // 2, np.uint8)
    absmax = np.empty(x.size // block_size, xs.dtype)
    x_hat = np.empty_like(xs)
    _nf4(xs, block_size, NF4_CODEBOOK.astype(xs.dtype), packed, absmax, x_hat)
    return packed, absmax.astype(x.dtype), x_hat.astype(x.dtype)


# ----------------------------------------------------------------------------- matmuls

@numba.njit(cache=True, parallel=True)
def _w4a16(x, w_packed, scales, zeros, group_size, y):
    """y[:, n] for each output n (in parallel): per group a 16-entry table (c - z) * s in the
    compute dtype, then y[m, n] += x[m, k] * table[code] over the group."""
    m_rows, k_cols = x.shape
    for n in numba.prange(w_packed.shape[0]):
        acc = np.zeros(m_rows, dtype=y.dtype)
        table = np.empty(16, dtype=y.dtype)
        for g in range(k_cols // group_size):
            for c in range(16):
                table[c] = (c - np.int64(zeros[n, g])) * scales[n, g]
            for m in range(m_rows):
                part = acc[m] - acc[m]  # zero of the compute dtype
                for kb in range(g * group_size // 2, (g + 1) * group_size // 2):
                    byte = w_packed[n, kb]
                    part += x[m, 2 * kb] * table[byte & 0xF] + x[m, 2 * kb + 1] * table[byte >> 4]
                acc[m] += part
        for m in range(m_rows):
            y[m, n] = acc[m]


def w4a16_matmul(x, w_packed, scales, zeros, group_size=128):
    x, w_packed, scales, zeros = w4a16_args(x, w_packed, scales, zeros, group_size)
    y = np.empty((x.shape[0], w_packed.shape[0]), compute_dtype(x.dtype))
    _w4a16(widen(x), np.ascontiguousarray(w_packed), widen(scales.astype(x.dtype)),
           np.ascontiguousarray(zeros), int(group_size), y)
    return y.astype(x.dtype)


@numba.njit(cache=True)
def _w8a8(x_q, w_q, x_scale, w_scale, acc, y):
    for m in range(x_q.shape[0]):
        for n in range(w_q.shape[0]):
            a = np.int32(0)
            for k in range(x_q.shape[1]):
                a += np.int32(x_q[m, k]) * np.int32(w_q[n, k])
            acc[m, n] = a
            y[m, n] = a * x_scale[m] * w_scale[n]


def w8a8_matmul(x_q, w_q, x_scale, w_scale):
    x_q, w_q, x_scale, w_scale = w8a8_args(x_q, w_q, x_scale, w_scale)
    acc = np.empty((x_q.shape[0], w_q.shape[0]), np.int32)
    y = np.empty(acc.shape, compute_dtype(x_scale.dtype))
    _w8a8(np.ascontiguousarray(x_q, np.int8), np.ascontiguousarray(w_q, np.int8),
          widen(x_scale), widen(w_scale), acc, y)
    return acc, y.astype(x_scale.dtype)
