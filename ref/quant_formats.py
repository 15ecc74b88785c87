"""Block and float quantization formats: GGUF Q4_0 / Q4_1 / Q8_0, bitsandbytes NF4 and scaled
FP8 (specs/gguf_quantize.yaml, specs/nf4_quantize.yaml, specs/fp8_quantize.yaml).

GGUF blocks are defined by ggml's C reference (ggml-quants.c, quantize_row_*_ref), which
computes in float32; so does this reference, whatever the input precision, so the bytes match
ggml bit for bit. Block layouts (ggml-common.h):
  Q4_0: 32 weights -> 18 bytes {fp16 d; uint8 qs[16]},            x = (q - 8) * d
  Q4_1: 32 weights -> 20 bytes {fp16 d; fp16 m; uint8 qs[16]},     x = q * d + m
  Q8_0: 32 weights -> 34 bytes {fp16 d; int8 qs[32]},              x = q * d
  4-bit nibbles: qs[j] = q[j] | q[j + 16] << 4   (element j low, element j + 16 high)
"""
import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array, int_array

QK = 32  # weights per GGUF block
BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}

# QLoRA NF4 codebook (bitsandbytes functional.py, create_normal_map(offset=0.9677083)).
NF4_CODEBOOK = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])


def check_format(fmt):
    if fmt not in BLOCK_BYTES:
        raise InputError(f"fmt: must be one of {sorted(BLOCK_BYTES)}, got {fmt!r}")
    return fmt


def roundf(v):
    """C roundf: round half away from zero."""
    return np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))


def pack_ggml_nibbles(q):
    """(blocks, 32) codes 0..15 -> (blocks, 16) bytes, qs[j] = q[j] | q[j + 16] << 4."""
    q = q.astype(np.uint8)
    return q[:, :16] | (q[:, 16:] << 4)


def unpack_ggml_nibbles(qs):
    """(blocks, 16) bytes -> (blocks, 32) codes: low nibbles are elements 0..15, high 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def fp16_bytes(v):
    """(blocks,) float32 -> (blocks, 2) little-endian IEEE half bytes (round to nearest even)."""
    return v.astype("<f2").reshape(-1, 1).view(np.uint8)


def quantize_q4_0(blocks):
    """max = the element of largest |x| (first on ties, signed), d = max / -8, id = 1/d (0 if d=0),
    q = min(15, trunc(x * id + 8.5))."""
    imax = np.abs(blocks).argmax(axis=1)
    d = blocks[np.arange(len(blocks)), imax] / np.float32(-8)  # (blocks,)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np.minimum(15, np.trunc(blocks * inv[:, None] + np.float32(8.5)).astype(np.int64))
    return np.concatenate([fp16_bytes(d), pack_ggml_nibbles(q)], axis=1)


def quantize_q4_1(blocks):
    """d = (max - min) / 15, m = min, q = min(15, trunc((x - min) * id + 0.5))."""
    lo, hi = blocks.min(axis=1), blocks.max(axis=1)
    d = (hi - lo) / np.float32(15)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = np.minimum(15, np.trunc((blocks - lo[:, None]) * inv[:, None] + np.float32(0.5)).astype(np.int64))
    return np.concatenate([fp16_bytes(d), fp16_bytes(lo), pack_ggml_nibbles(q)], axis=1)


def quantize_q8_0(blocks):
    """d = max|x| / 127, q = roundf(x * id) (half away from zero), id = 1/d (0 if d = 0)."""
    d = np.abs(blocks).max(axis=1) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
    q = roundf(blocks * inv[:, None]).astype(np.int8)
    return np.concatenate([fp16_bytes(d), q.view(np.uint8)], axis=1)


def dequantize_gguf(blocks, fmt):
    """(blocks, bytes) uint8 -> (blocks * 32,) float32, per the layouts above."""
    d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)  # (blocks, 1)
    if fmt == "Q8_0":
        return (blocks[:, 2:].copy().view(np.int8).astype(np.float32) * d).reshape(-1)
    if fmt == "Q4_0":
        q = unpack_ggml_nibbles(blocks[:, 2:]).astype(np.float32)
        return ((q - np.float32(8)) * d).reshape(-1)
    m = blocks[:, 2:4].copy().view("<f2").astype(np.float32)
    return (unpack_ggml_nibbles(blocks[:, 4:]).astype(np.float32) * d + m).reshape(-1)


def gguf_quantize(x, fmt="Q4_0"):
    """GGUF block quantization of a flat tensor: (blocks uint8 (B, bytes), x_hat).

    x is rounded to float32 first (GGUF's input type), blocks of 32 are quantized by ggml's
    reference rule and x_hat is the dequantized result in x's dtype.
    """
    fmt = check_format(fmt)
    x = float_array("x", x, ndim=1)
    if x.size % QK:
        raise InputError(f"x: length {x.size} is not a multiple of the block size {QK}")
    blocks = x.astype(np.float32).reshape(-1, QK)  # (B, 32)
    quantize = {"Q4_0": quantize_q4_0, "Q4_1": quantize_q4_1, "Q8_0": quantize_q8_0}[fmt]
    packed = quantize(blocks)
    return packed, dequantize_gguf(packed, fmt).astype(x.dtype)


def gguf_dequantize(blocks, fmt="Q4_0"):
    """(B, bytes) uint8 blocks -> (B * 32,) float32."""
    fmt = check_format(fmt)
    blocks = int_array("blocks", blocks, ndim=2)
    if blocks.dtype != np.uint8 or blocks.shape[1] != BLOCK_BYTES[fmt]:
        raise InputError(f"blocks: {fmt} needs uint8 rows of {BLOCK_BYTES[fmt]} bytes, "
                         f"got {blocks.dtype} {blocks.shape}")
    return dequantize_gguf(blocks, fmt)


# ----------------------------------------------------------------------------- NF4

def nf4_quantize(x, block_size=64):
    """NF4 (QLoRA): per block of `block_size` consecutive elements,
        absmax = max|x|,  code = argmin_c |x / absmax - NF4[c]|   (nearest; ties to the lower code)
        packed byte i = code[2i] << 4 | code[2i+1]                (first element high nibble)
        x_hat = NF4[code] * absmax
    A block of zeros has absmax 0 and decodes to 0 (code 7). Returns (packed, absmax, x_hat).
    """
    x = float_array("x", x, ndim=1)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2 or block_size % 2:
        raise InputError(f"block_size: must be an even integer >= 2, got {block_size!r}")
    if x.size % block_size:
        raise InputError(f"x: length {x.size} is not a multiple of block_size {block_size}")
    blocks = x.reshape(-1, block_size)  # (B, block_size)
    absmax = np.abs(blocks).max(axis=1)
    safe = np.where(absmax == 0, x.dtype.type(1), absmax)
    scaled = blocks / safe[:, None]
    book = NF4_CODEBOOK.astype(x.dtype)
    codes = nf4_nearest(scaled, book)
    pairs = codes.reshape(-1, 2).astype(np.uint8)  # (n/2, 2)
    packed = (pairs[:, 0] << 4) | pairs[:, 1]
    x_hat = (book[codes] * absmax[:, None]).reshape(-1)
    return packed, absmax, x_hat.astype(x.dtype)


def nf4_nearest(scaled, book):
    """Index of the nearest codebook value; on an exact tie the lower index wins (argmin)."""
    return np.abs(scaled[..., None] - book).argmin(axis=-1)  # (..., 16) -> (...)


def nf4_dequantize(packed, absmax, block_size=64):
    """Inverse of the packing: NF4[code] * absmax[block]."""
    packed = int_array("packed", packed, ndim=1)
    absmax = float_array("absmax", absmax, ndim=1)
    if packed.dtype != np.uint8 or 2 * packed.size != absmax.size * block_size:
        raise InputError(f"packed: expected {absmax.size * block_size // 2} uint8 bytes for "
                         f"{absmax.size} blocks of {block_size}, got {packed.dtype} {packed.shape}")
    codes = np.stack([packed >> 4, packed & 0x0F], axis=1).reshape(-1, block_size)  # (B, bs)
    return (NF4_CODEBOOK.astype(absmax.dtype)[codes] * absmax[:, None]).reshape(-1)


# ----------------------------------------------------------------------------- FP8

FP8_FORMATS = {"e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2"}


def fp8_dtype(fmt):
    import ml_dtypes

    if fmt not in FP8_FORMATS:
        raise InputError(f"fmt: must be one of {sorted(FP8_FORMATS)}, got {fmt!r}")
    return np.dtype(getattr(ml_dtypes, FP8_FORMATS[fmt]))


def fp8_quantize(x, fmt="e4m3"):
    """Per-tensor scaled FP8: scale = max|x| / F (F = 448 for e4m3fn, 57344 for e5m2; 1 if x = 0),
    bits = the FP8 encoding of x / scale rounded to nearest even, x_hat = fp8(bits) * scale.
    Returns (scale (1,), bits uint8, x_hat)."""
    import ml_dtypes

    dt = fp8_dtype(fmt)
    x = float_array("x", x, min_ndim=1)
    fmax = x.dtype.type(float(ml_dtypes.finfo(dt).max))
    amax = np.abs(x).max()
    scale = amax / fmax if amax > 0 else x.dtype.type(1)
    code = (x / scale).astype(dt)  # round to nearest even; |x / scale| <= F, no overflow
    return (np.array([scale], dtype=x.dtype), code.view(np.uint8),
            (code.astype(x.dtype) * scale).astype(x.dtype))
