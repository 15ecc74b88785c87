"""GGUF Q4_0 / Q4_1 / Q8_0 block quantization as one numba.njit loop over the blocks
(reference: llmref.ref.gguf_quantize); the argument checks are the reference's
(gguf_quantize_args). numba-cpu is its only backend, so the loop holds its math: ggml's
reference quantizers in float32 (quantize_row_*_ref, no fused multiply-add).

The blocks are spread over threads (prange; llmref.accel.numba_cpu._threads). Each block is
read once and writes its bytes and its x_hat directly: the scale d (and Q4_1's minimum m),
their fp16 bits (round to nearest even, from the float32 bits, as llmref.dtypes.round_to
rounds), the codes from the float32 d,
packed as they are made, and x_hat from the stored fp16 values. float32 input (and
float16/bfloat16, which float32 holds exactly) is quantized in place; float64 input is rounded
to float32 by llmref.dtypes.round_to first, as the reference does.
"""
import numba
import numpy as np

from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.dtypes import round_to
from llmref.ref.gguf_quantize import BLOCK_BYTES, GGUF_FORMATS, QK, gguf_quantize_args

HALF = QK // 2


@numba.njit(cache=True, inline="always")
def _half_bits(x):
    """The IEEE half bits of float32 x, rounded to nearest, ties to even (overflow -> inf)."""
    u = np.int64(np.float32(x).view(np.uint32))
    sign = (u >> 16) & 0x8000
    a = u & 0x7FFFFFFF
    if a >= 0x7F800000:  # inf, NaN (a quiet NaN)
        return sign | 0x7C00 | (0x200 if a > 0x7F800000 else 0)
    if a >= 0x477FF000:  # >= 65520: rounds past the largest half, 65504
        return sign | 0x7C00
    if a >= 0x38800000:  # a normal half: drop 13 fraction bits, nearest even
        return sign | ((a - 0x38000000 + 0xFFF + ((a >> 13) & 1)) >> 13)
    shift = 126 - (a >> 23)  # a subnormal half (or 0): n = significand >> shift, n * 2^-24
    if shift > 24:  # below 2^-25: rounds to zero
        return sign
    significand = (a & 0x7FFFFF) | 0x800000
    n = significand >> shift
    rest = significand & ((1 << shift) - 1)
    halfway = 1 << (shift - 1)
    if rest > halfway or (rest == halfway and (n & 1) == 1):
        n += 1
    return sign | n


@numba.njit(cache=True, inline="always")
def _half_value(h):
    """The float32 value of half bits h (exact)."""
    exponent = (h >> 10) & 0x1F
    fraction = h & 0x3FF
    if exponent == 0:  # subnormal: fraction * 2^-24, exact in float32
        magnitude = np.float32(fraction) * np.float32(5.9604644775390625e-08)
    elif exponent == 0x1F:
        magnitude = np.float32(np.inf) if fraction == 0 else np.float32(np.nan)
    else:
        magnitude = np.uint32(((exponent + 112) << 23) | (fraction << 13)).view(np.float32)
    return -magnitude if h & 0x8000 else magnitude


@threaded_loop()
def _gguf_blocks(blocks, fmt, packed, out):
    """Per block b of blocks (B, 32): packed[b] (the block bytes) and out[b] (x_hat); fmt 0 =
    Q4_0, 1 = Q4_1, 2 = Q8_0.
      Q4_0: d = v / -8 (v the element of largest |x|, the first on ties), q = min(15, trunc(x id + 8.5))
      Q4_1: d = (max - min) / 15, m = min,                            q = min(15, trunc((x - m) id + 0.5))
      Q8_0: d = max|x| / 127,                                         q = roundf(x id)
    id = 1 / d (0 for d = 0), every product and sum a float32 operation; x_hat = (q - 8) d16,
    q d16 + m16 or q d16 with d16, m16 the stored fp16 values."""
    for b in numba.prange(blocks.shape[0]):
        lo = blocks[b, 0]
        hi = lo
        vmax = lo
        amax = abs(lo)
        for j in range(1, QK):
            v = blocks[b, j]
            lo = min(lo, v)
            hi = max(hi, v)
            if abs(v) > amax:
                amax = abs(v)
                vmax = v
        if fmt == 0:
            d = vmax / np.float32(-8)
        elif fmt == 1:
            d = (hi - lo) / np.float32(15)
        else:
            d = amax / np.float32(127)
        inv = np.float32(1) / d if d != 0 else np.float32(0)
        dh = _half_bits(d)
        d16 = _half_value(dh)
        packed[b, 0] = dh & 0xFF
        packed[b, 1] = dh >> 8
        if fmt == 0:
            for j in range(HALF):
                q0 = min(15, int(blocks[b, j] * inv + np.float32(8.5)))
                q1 = min(15, int(blocks[b, j + HALF] * inv + np.float32(8.5)))
                packed[b, 2 + j] = (q0 & 0xF) | ((q1 & 0xF) << 4)
                out[b, j] = np.float32(q0 - 8) * d16
                out[b, j + HALF] = np.float32(q1 - 8) * d16
        elif fmt == 1:
            mh = _half_bits(lo)
            m16 = _half_value(mh)
            packed[b, 2] = mh & 0xFF
            packed[b, 3] = mh >> 8
            for j in range(HALF):
                q0 = min(15, int((blocks[b, j] - lo) * inv + np.float32(0.5)))
                q1 = min(15, int((blocks[b, j + HALF] - lo) * inv + np.float32(0.5)))
                packed[b, 4 + j] = (q0 & 0xF) | ((q1 & 0xF) << 4)
                out[b, j] = np.float32(q0) * d16 + m16
                out[b, j + HALF] = np.float32(q1) * d16 + m16
        else:
            for j in range(QK):
                t = blocks[b, j] * inv
                whole = int(t)  # C roundf, half away from zero, exactly: t - trunc(t) is exact
                rest = t - whole  # (floor(|t| + 0.5f) is not: 0.5f - 2^-25 + 0.5f rounds to 1)
                q = whole + (1 if rest >= 0.5 else (-1 if rest <= -0.5 else 0))
                packed[b, 2 + j] = q & 0xFF  # int8, two's complement
                out[b, j] = np.float32(q) * d16


def gguf_quantize(x, fmt="Q4_0"):
    x = gguf_quantize_args(x, fmt)
    if x.dtype == np.float64:  # llmref's own rounding to GGUF's float32 input
        x32 = round_to(x, "float32")
    else:  # float32 holds float32, float16 and bfloat16 values exactly
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    blocks = x32.reshape(-1, QK)  # (B, 32)
    packed = np.empty((blocks.shape[0], BLOCK_BYTES[fmt]), np.uint8)
    out = np.empty(blocks.shape, np.float32)
    _gguf_blocks(blocks.size, blocks, GGUF_FORMATS.index(fmt), packed, out)
    return packed, out.reshape(-1).astype(x.dtype, copy=False)
