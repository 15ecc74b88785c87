"""bitsandbytes NF4 (QLoRA) blockwise quantization (specs/nf4_quantize.yaml), and the tie
model of a float32 evaluation (ref/_quant.py describes the model).
"""
import numpy as np

from llmref.dtypes import UNIT_ROUNDOFF
from llmref.errors import InputError
from llmref.ref._quant import gamma, is_power_of_two, representable, tie_interval
from llmref.validate import float_array, int_array, integer

# QLoRA NF4 codebook (bitsandbytes functional.py, create_normal_map(offset=0.9677083)).
NF4_CODEBOOK = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])


def nf4_quantize_args(x, block_size):
    """Validated (x, block_size) of nf4_quantize: x 1-D, a nonzero multiple of the even
    block_size >= 2; every backend checks through this before any kernel runs."""
    x = float_array("x", x, ndim=1)
    block_size = integer("block_size", block_size, low=2)
    if block_size % 2:
        raise InputError(f"block_size: must be even (two codes per byte), got {block_size}")
    if x.size == 0 or x.size % block_size:
        raise InputError(f"x: length {x.size} is not a positive multiple of block_size {block_size}")
    return x, block_size


def nf4_quantize(x, block_size=64):
    """NF4 (QLoRA): per block of `block_size` consecutive elements,
        absmax = max|x|,  code = argmin_c |x / absmax - NF4[c]|   (nearest; ties to the lower code)
        packed byte i = code[2i] << 4 | code[2i+1]                (first element high nibble)
        x_hat = NF4[code] * absmax
    A block of zeros has absmax 0 and decodes to 0 (code 7). Returns (packed, absmax, x_hat).
    """
    x, block_size = nf4_quantize_args(x, block_size)
    blocks = x.reshape(-1, block_size)  # (B, block_size)
    absmax = np.abs(blocks).max(axis=1)
    safe = np.where(absmax == 0, x.dtype.type(1), absmax)
    scaled = blocks / safe[:, None]
    book = NF4_CODEBOOK.astype(x.dtype)
    codes = nf4_nearest(scaled, book)
    x_hat = (book[codes] * absmax[:, None]).reshape(-1)
    return pack_nf4(codes), absmax, x_hat.astype(x.dtype)


def nf4_nearest(scaled, book):
    """Index of the nearest codebook value; on an exact tie the lower index wins (argmin)."""
    return np.abs(scaled[..., None] - book).argmin(axis=-1)  # (..., 16) -> (...)


def pack_nf4(codes):
    """(B, block_size) codes -> (n/2,) bytes, the first of each pair in the high nibble."""
    pairs = codes.reshape(-1, 2).astype(np.uint8)  # (n/2, 2)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def nf4_dequantize(packed, absmax, block_size=64):
    """Inverse of the packing: NF4[code] * absmax[block]."""
    packed = int_array("packed", packed, ndim=1)
    absmax = float_array("absmax", absmax, ndim=1)
    if packed.dtype != np.uint8 or 2 * packed.size != absmax.size * block_size:
        raise InputError(f"packed: expected {absmax.size * block_size // 2} uint8 bytes for "
                         f"{absmax.size} blocks of {block_size}, got {packed.dtype} {packed.shape}")
    codes = np.stack([packed >> 4, packed & 0x0F], axis=1).reshape(-1, block_size)  # (B, bs)
    return (NF4_CODEBOOK.astype(absmax.dtype)[codes] * absmax[:, None]).reshape(-1)


# ----------------------------------------------------------------------------- ties

def nf4_ties(dtype, x, block_size=64):
    """{packed, x_hat: (near_tie, alternative)} of a `dtype` evaluation of nf4_quantize.

    s = x / absmax (absmax exact: a maximum): s' = x / absmax or x * (1/absmax) (bitsandbytes)
    carries gamma_2 |s|, 0 where absmax is a power of two and s a dtype value. The decision
    boundary between codes c_i and c_(i+1) is their midpoint m_i; a dtype implementation
    compares with m_i rounded to dtype (bitsandbytes' CUDA thresholds are float32 literals:
    u |m_i|) or compares rounded distances |s - c| (u g_i, g_i = c_(i+1) - c_i), so the
    boundary is known to u (|m_i| + g_i). An exact midpoint computed exactly is a tie every
    implementation resolves by the rule (lower code): there the boundary term is 0.
    """
    x, block_size = nf4_quantize_args(x, block_size)
    blocks = x.reshape(-1, block_size)
    absmax = np.abs(blocks).max(axis=1)
    safe = np.where(absmax == 0, 1.0, absmax)[:, None]
    s = blocks / safe  # (B, block_size)
    exact = is_power_of_two(safe) & representable(s, dtype)
    book = NF4_CODEBOOK
    mids = (book[1:] + book[:-1]) / 2  # (15,)
    above = np.clip(np.searchsorted(mids, s), 1, 14)  # the nearest is mids[above - 1] or mids[above]
    pick = np.where(np.abs(s - mids[above - 1]) <= np.abs(s - mids[above]), above - 1, above)
    boundary = UNIT_ROUNDOFF[dtype] * (np.abs(mids[pick]) + (book[pick + 1] - book[pick]))
    spread = np.where(exact, 0.0, gamma(2, dtype) * np.abs(s)) + np.where(
        exact & (s == mids[pick]), 0.0, boundary)
    codes = nf4_nearest(s, book)
    near, alt = tie_interval(lambda v: nf4_nearest(v, book), s - spread, s + spread, codes)
    codes_alt = np.where(near, alt, codes)
    packed, packed_alt = pack_nf4(codes), pack_nf4(codes_alt)
    x_hat = (book[codes] * absmax[:, None]).reshape(-1)
    x_hat_alt = (book[codes_alt] * absmax[:, None]).reshape(-1)
    return {"packed": (packed_alt != packed, packed_alt), "x_hat": (x_hat_alt != x_hat, x_hat_alt)}
