"""GGUF Q4_0 / Q4_1 / Q8_0 block quantization as numba.njit loops (reference:
llmref.ref.gguf_quantize); the argument checks are the reference's (gguf_quantize_args).
numba-cpu is its only backend, so the loops hold its math: ggml's reference quantizers in
float32 (quantize_row_*_ref, no fused multiply-add), then the block bytes on the host.
"""
import numba
import numpy as np

from llmref.dtypes import round_to
from llmref.ref.gguf_quantize import BLOCK_BYTES, GGUF_FORMATS, QK, gguf_quantize_args


@numba.njit(cache=True)
def _gguf_codes(blocks, fmt, d, m, codes):
    """Per block: d (and m), then each code; fmt 0 = Q4_0, 1 = Q4_1, 2 = Q8_0.
      Q4_0: d = v / -8 (v the element of largest |x|, the first on ties), q = min(15, trunc(x id + 8.5))
      Q4_1: d = (max - min) / 15, m = min,                            q = min(15, trunc((x - m) id + 0.5))
      Q8_0: d = max|x| / 127,                                         q = roundf(x id)
    id = 1 / d (0 for d = 0), every product and sum a float32 operation."""
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
                whole = int(t)  # C roundf, half away from zero, exactly: t - trunc(t) is exact
                rest = t - whole  # (floor(|t| + 0.5f) is not: 0.5f - 2^-25 + 0.5f rounds to 1)
                codes[b, j] = whole + (1 if rest >= 0.5 else (-1 if rest <= -0.5 else 0))


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
    x = gguf_quantize_args(x, fmt)
    blocks = np.ascontiguousarray(round_to(x, "float32").reshape(-1, QK))  # (B, 32)
    nb, kind = blocks.shape[0], GGUF_FORMATS.index(fmt)
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
