"""Block and float quantization formats: GGUF Q4_0 / Q4_1 / Q8_0, bitsandbytes NF4 and scaled
FP8 (specs/gguf_quantize.yaml, specs/nf4_quantize.yaml, specs/fp8_quantize.yaml).

GGUF blocks are defined by ggml's C reference (ggml-quants.c, quantize_row_*_ref), which
computes in float32; so does this reference, whatever the input precision, so the bytes match
ggml bit for bit. Block layouts (ggml-common.h):
  Q4_0: 32 weights -> 18 bytes {fp16 d; uint8 qs[16]},            x = (q - 8) * d
  Q4_1: 32 weights -> 20 bytes {fp16 d; fp16 m; uint8 qs[16]},     x = q * d + m
  Q8_0: 32 weights -> 34 bytes {fp16 d; int8 qs[32]},              x = q * d
  4-bit nibbles: qs[j] = q[j] | q[j + 16] << 4   (element j low, element j + 16 high)

Every rounding that decides a byte here is llmref's own: float64 -> float32 / float16 by
llmref.dtypes.round_to, float -> FP8 by fp8_round below (exact integer operations), never a
library cast whose behaviour changes between releases. The tie model shared by the `*_ties`
functions is described in ref/quant.py.
"""
from dataclasses import dataclass

import numpy as np

from llmref.dtypes import UNIT_ROUNDOFF, round_to
from llmref.errors import InputError
from llmref.ref.quant import gamma, is_power_of_two, representable, tie_interval
from llmref.validate import float_array, int_array

QK = 32  # weights per GGUF block
BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}
GGUF_FORMATS = tuple(BLOCK_BYTES)

# QLoRA NF4 codebook (bitsandbytes functional.py, create_normal_map(offset=0.9677083)).
NF4_CODEBOOK = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])


# ----------------------------------------------------------------------------- GGUF

def gguf_args(x, fmt):
    """Validated x (1-D, a nonzero multiple of 32 long) of gguf_quantize; every backend checks
    through this before any kernel runs."""
    if fmt not in GGUF_FORMATS:
        raise InputError(f"fmt: must be one of {GGUF_FORMATS}, got {fmt!r}")
    x = float_array("x", x, ndim=1)
    if x.size == 0 or x.size % QK:
        raise InputError(f"x: length {x.size} is not a positive multiple of the block size {QK}")
    return x


def roundf(v):
    """C roundf: round half away from zero, exactly (v - trunc(v) is exact; floor(|v| + 0.5)
    is not, the sum rounds for the largest float below 0.5)."""
    whole = np.trunc(v)
    return whole + np.sign(v) * (np.abs(v - whole) >= 0.5)


def pack_ggml_nibbles(q):
    """(blocks, 32) codes 0..15 -> (blocks, 16) bytes, qs[j] = q[j] | q[j + 16] << 4."""
    q = q.astype(np.uint8)
    return q[:, :16] | (q[:, 16:] << 4)


def unpack_ggml_nibbles(qs):
    """(blocks, 16) bytes -> (blocks, 32) codes: low nibbles are elements 0..15, high 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def fp16_bytes(v):
    """(blocks,) float32 -> (blocks, 2) little-endian IEEE half bytes (round to nearest even,
    llmref.dtypes.round_to)."""
    bits = round_to(np.asarray(v, np.float64), "float16").view(np.uint16).astype("<u2")
    return bits.reshape(-1, 1).view(np.uint8)


def reciprocal(d):
    """ggml's id = d ? 1.0f/d : 0.0f, in float32."""
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def q4_0_scale(blocks):
    """d = v / -8 with v the element of largest |x| (the first on ties, signed)."""
    imax = np.abs(blocks).argmax(axis=1)
    return blocks[np.arange(len(blocks)), imax] / np.float32(-8)  # (B,)


def q4_1_scale(blocks):
    """(d, m) = ((max - min) / 15, min)."""
    lo, hi = blocks.min(axis=1), blocks.max(axis=1)
    return (hi - lo) / np.float32(15), lo


def q8_0_scale(blocks):
    """d = max|x| / 127."""
    return np.abs(blocks).max(axis=1) / np.float32(127)


def gguf_decisions(blocks, fmt):
    """(d, m, w, offset, rounding): the block scale d, the Q4_1 minimum m (None otherwise), the
    value w each code rounds (float32 products, as ggml computes them) and the rounding:
      Q4_0: q = min(15, trunc(x * id + 8.5))           w = x * id, offset 8.5
      Q4_1: q = min(15, trunc((x - min) * id + 0.5))   w = (x - min) * id, offset 0.5
      Q8_0: q = roundf(x * id)  (half away from zero)  w = x * id, no offset
    id = 1/d (0 if d = 0). trunc(w + 8.5) of w >= -8 is floor(w + 1/2): ties of w round UP."""
    if fmt == "Q4_0":
        d, m = q4_0_scale(blocks), None
        w = blocks * reciprocal(d)[:, None]
        return d, m, w, np.float32(8.5), lambda v: np.minimum(15, np.trunc(v)).astype(np.int64)
    if fmt == "Q4_1":
        d, m = q4_1_scale(blocks)
        w = (blocks - m[:, None]) * reciprocal(d)[:, None]
        return d, m, w, np.float32(0.5), lambda v: np.minimum(15, np.trunc(v)).astype(np.int64)
    d, m = q8_0_scale(blocks), None
    return d, m, blocks * reciprocal(d)[:, None], None, lambda v: roundf(v).astype(np.int64)


def gguf_codes(blocks, fmt):
    """(d, m, q): ggml's reference quantizer in float32 (no fused multiply-add)."""
    d, m, w, offset, rounding = gguf_decisions(blocks, fmt)
    return d, m, rounding(w if offset is None else w + offset)


def pack_gguf(fmt, d, m, q):
    """(B, bytes) blocks: fp16 d [, fp16 m], then the codes (nibbles or int8)."""
    parts = [fp16_bytes(d)] + ([fp16_bytes(m)] if fmt == "Q4_1" else [])
    codes = q.astype(np.int8).view(np.uint8) if fmt == "Q8_0" else pack_ggml_nibbles(q)
    return np.concatenate(parts + [codes], axis=1)


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
    reference rule (gguf_decisions) and x_hat is the dequantized result in x's dtype.
    """
    x = gguf_args(x, fmt)
    blocks = round_to(x, "float32").reshape(-1, QK)  # (B, 32)
    packed = pack_gguf(fmt, *gguf_codes(blocks, fmt))
    return packed, dequantize_gguf(packed, fmt).astype(x.dtype)


def gguf_ties(dtype, x, fmt="Q4_0"):
    """{blocks, x_hat: (near_tie, alternative)}: codes another correct float32 ggml build may
    round the other way.

    w = x * id is a product of two float32 values (exact in float64). ggml rounds it to float32
    and adds the offset with a second rounding; a build that contracts them into a fused
    multiply-add (gcc's default -ffp-contract=fast with FMA; gguf-py emulates it in float64)
    rounds once. Either way the value truncated lies within
        delta = u |w| [w not a float32] + gamma_1 (|w + offset| + u |w|) [the sum not exact]
    of the exact w + offset (u = 2^-24, float32 whatever `dtype`; exact steps add nothing, so
    exact ties computed exactly stay exact). Where the interval holds an integer (Q4_*) or a
    half-integer (Q8_0, roundf) the code may take the other neighbour: its nibble or byte and
    its x_hat take the alternative.
    """
    x = gguf_args(x, fmt)
    blocks = round_to(x, "float32").reshape(-1, QK)
    d, m, w32, offset, rounding = gguf_decisions(blocks, fmt)
    q = rounding(w32 if offset is None else w32 + offset)
    w = _exact_product(blocks, m, d)  # (B, 32) float64
    inexact_product = ~representable(w, "float32")
    product_error = UNIT_ROUNDOFF["float32"] * np.abs(w) * inexact_product
    v = w if offset is None else w + float(offset)
    inexact_sum = (inexact_product | ~representable(v, "float32")) if offset is not None else False
    spread = product_error + gamma(1, "float32") * (np.abs(v) + product_error) * inexact_sum
    near, alt = tie_interval(rounding, v - spread, v + spread, q)
    q_alt = np.where(near, alt, q)
    blocks_out = pack_gguf(fmt, d, m, q)
    blocks_alt = pack_gguf(fmt, d, m, q_alt)
    x_hat, x_hat_alt = dequantize_gguf(blocks_out, fmt), dequantize_gguf(blocks_alt, fmt)
    return {"blocks": (blocks_alt != blocks_out, blocks_alt),
            "x_hat": (x_hat_alt != x_hat, x_hat_alt.astype(np.float64))}


def _exact_product(blocks, m, d):
    """w of gguf_decisions without rounding the product: float32 factors, float64 product."""
    factor = reciprocal(d).astype(np.float64)[:, None]
    base = blocks if m is None else blocks - m[:, None]  # Q4_1: x - min is rounded to float32 by all
    return base.astype(np.float32).astype(np.float64) * factor


def gguf_dequantize(blocks, fmt="Q4_0"):
    """(B, bytes) uint8 blocks -> (B * 32,) float32."""
    if fmt not in GGUF_FORMATS:
        raise InputError(f"fmt: must be one of {GGUF_FORMATS}, got {fmt!r}")
    blocks = int_array("blocks", blocks, ndim=2)
    if blocks.dtype != np.uint8 or blocks.shape[1] != BLOCK_BYTES[fmt]:
        raise InputError(f"blocks: {fmt} needs uint8 rows of {BLOCK_BYTES[fmt]} bytes, "
                         f"got {blocks.dtype} {blocks.shape}")
    return dequantize_gguf(blocks, fmt)


# ----------------------------------------------------------------------------- NF4

def nf4_args(x, block_size):
    """Validated x of nf4_quantize: 1-D, a nonzero multiple of the even block_size >= 2."""
    x = float_array("x", x, ndim=1)
    if (isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer))
            or block_size < 2 or block_size % 2):
        raise InputError(f"block_size: must be an even integer >= 2, got {block_size!r}")
    if x.size == 0 or x.size % block_size:
        raise InputError(f"x: length {x.size} is not a positive multiple of block_size {block_size}")
    return x


def nf4_quantize(x, block_size=64):
    """NF4 (QLoRA): per block of `block_size` consecutive elements,
        absmax = max|x|,  code = argmin_c |x / absmax - NF4[c]|   (nearest; ties to the lower code)
        packed byte i = code[2i] << 4 | code[2i+1]                (first element high nibble)
        x_hat = NF4[code] * absmax
    A block of zeros has absmax 0 and decodes to 0 (code 7). Returns (packed, absmax, x_hat).
    """
    x = nf4_args(x, block_size)
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
    x = nf4_args(x, block_size)
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

@dataclass(frozen=True)
class FP8Format:
    """An 8-bit float: sign, `exponent_bits`, `mantissa_bits`, exponent bias. Codes above
    max_code (the largest finite magnitude) are overflow_code; infinities become inf_code and
    NaN nan_code (sign bit added). OCP 8-bit Floating Point Specification (OFP8) rev. 1.0."""
    name: str
    exponent_bits: int
    mantissa_bits: int
    bias: int
    max_code: int
    overflow_code: int
    inf_code: int
    nan_code: int


FP8_FORMATS = {
    # e4m3fn: no infinities; S.1111.111 is NaN, so 448 = S.1111.110 is the largest finite value
    "e4m3": FP8Format("e4m3fn", 4, 3, 7, max_code=0x7E, overflow_code=0x7F, inf_code=0x7F, nan_code=0x7F),
    # e5m2: IEEE 754-like, S.11111.00 = inf, S.11111.xx (xx != 0) NaN
    "e5m2": FP8Format("e5m2", 5, 2, 15, max_code=0x7B, overflow_code=0x7C, inf_code=0x7C, nan_code=0x7E),
}


def fp8_format(fmt):
    if fmt not in tuple(FP8_FORMATS):
        raise InputError(f"fmt: must be one of {tuple(FP8_FORMATS)}, got {fmt!r}")
    return FP8_FORMATS[fmt]


def fp8_value(bits, fmt):
    """FP8 codes (uint8) -> their float64 values, from the format definition:
    field 0: (-1)^s (mantissa / 2^m) 2^(1 - bias) (subnormal); otherwise
    (-1)^s (1 + mantissa / 2^m) 2^(field - bias); e4m3fn S.1111.111 and e5m2 S.11111.xx are NaN
    (e5m2 S.11111.00 is inf)."""
    f = FP8_FORMATS[fmt] if isinstance(fmt, str) else fmt
    b = np.asarray(bits, dtype=np.int64)
    m = f.mantissa_bits
    sign = np.where(b & 0x80, -1.0, 1.0)
    field, mantissa = (b & 0x7F) >> m, b & ((1 << m) - 1)
    magnitude = np.where(field == 0, np.ldexp(mantissa.astype(np.float64), 1 - f.bias - m),
                         np.ldexp((mantissa + (1 << m)).astype(np.float64), field - f.bias - m))
    top = field == (1 << f.exponent_bits) - 1
    if f.inf_code == f.nan_code:  # e4m3fn: only the all-ones code is special
        magnitude = np.where((b & 0x7F) == f.nan_code, np.nan, magnitude)
    else:
        magnitude = np.where(top, np.where(mantissa == 0, np.inf, np.nan), magnitude)
    return sign * magnitude


def fp8_round(x, fmt):
    """float64 values -> FP8 codes, round to nearest, ties to even, directly (no intermediate
    format), with exact integer operations on the bit patterns:
        x = (-1)^s M 2^(E - 52)                 M the 53-bit significand of a finite float64
        q = max(E, 1 - bias) - m                 the FP8 quantum at x's binade (m mantissa bits)
        N = round_half_even(M 2^(E - 52 - q))    an exact shift and a remainder test
        code = (q + m + bias) << m | N mod 2^m   (exponent field 0 when N < 2^m: a subnormal);
                                                  N = 2^(m+1) carries into the next binade
    A code above the largest finite one overflows: e4m3fn to NaN (it has no infinities: |x| > 464
    rounds past 448, 464 itself to 448), e5m2 to inf (|x| >= 61440, IEEE). NaN -> NaN (0x7F
    e4m3fn, 0x7E e5m2), inf -> NaN (e4m3fn) or inf (e5m2); the sign is kept (-0.0 -> 0x80).
    """
    f = FP8_FORMATS[fmt] if isinstance(fmt, str) else fmt
    bits = np.asarray(x, dtype=np.float64).view(np.uint64)
    sign = (bits >> np.uint64(63)).astype(np.int64)
    biased = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    fraction = (bits & np.uint64((1 << 52) - 1)).astype(np.int64)
    m = f.mantissa_bits
    normal = biased > 0
    significand = np.where(normal, fraction | (1 << 52), fraction)
    exponent = np.where(normal, biased - 1023, -1022)
    quantum = np.maximum(exponent, 1 - f.bias) - m
    shift = np.minimum(52 + quantum - exponent, 62)  # >= 52 - m; past 54 everything rounds to 0
    kept = significand >> shift
    remainder = significand & ((np.int64(1) << shift) - 1)
    half = np.int64(1) << (shift - 1)
    n = kept + ((remainder > half) | ((remainder == half) & (kept & 1 == 1)))
    carry = n == (1 << (m + 1))
    n = np.where(carry, 1 << m, n)
    quantum = quantum + carry
    field = np.where(n >= (1 << m), quantum + m + f.bias, 0)
    code = np.where(field > (1 << f.exponent_bits) - 1, f.overflow_code,
                    (field << m) | (n & ((1 << m) - 1)))
    code = np.where(code > f.max_code, f.overflow_code, code)
    special = biased == 0x7FF
    code = np.where(special, np.where(fraction != 0, f.nan_code, f.inf_code), code)
    return ((sign << 7) | code).astype(np.uint8)


def fp8_max(fmt):
    """The largest finite value: 448 (e4m3fn), 57344 (e5m2)."""
    return float(fp8_value(FP8_FORMATS[fmt].max_code, fmt))


def fp8_args(x, fmt):
    """Validated x (at least 1-D, not empty) of fp8_quantize."""
    fp8_format(fmt)
    x = float_array("x", x, min_ndim=1)
    if x.size == 0:
        raise InputError(f"x: has no elements (shape {x.shape}); the scale needs at least one")
    return x


def fp8_quantize(x, fmt="e4m3"):
    """Per-tensor scaled FP8: scale = max|x| / F (F = 448 for e4m3fn, 57344 for e5m2; 1 if x = 0),
    bits = fp8_round(x / scale) (round to nearest even), x_hat = value(bits) * scale.
    Returns (scale (1,), bits uint8, x_hat)."""
    x = fp8_args(x, fmt)
    amax = np.abs(x).max()
    scale = amax / x.dtype.type(fp8_max(fmt)) if amax > 0 else x.dtype.type(1)
    bits = fp8_round((x / scale).astype(np.float64), fmt)  # |x / scale| <= F (1 + 2u) < F + half ulp
    x_hat = fp8_value(bits, fmt).astype(x.dtype) * scale
    return np.array([scale], dtype=x.dtype), bits, x_hat.astype(x.dtype)


def fp8_ties(dtype, x, fmt="e4m3"):
    """{bits, x_hat: (near_tie, alternative)} of a `dtype` evaluation of fp8_quantize.

    v = x / S, S = max|x| / F: a dtype implementation rounds S once (0 where S is a dtype value
    computed exactly) and forms x / S' or x * (1/S') (2 roundings), so |v' - v| <= gamma_k |v|,
    k = 3 (2 for an exact S, 0 where S is a power of two and v a dtype value). Where that
    interval holds a midpoint between two FP8 values the code may take the other one.
    """
    x = fp8_args(x, fmt)
    amax = np.abs(x).max()
    scale = amax / fp8_max(fmt) if amax > 0 else 1.0
    v = x / scale
    exact_scale = amax == 0 or bool(representable(scale, dtype) & (scale * fp8_max(fmt) == amax))
    exact_v = exact_scale & bool(is_power_of_two(scale)) & representable(v, dtype)
    spread = gamma(np.where(exact_v, 0, 2 + (not exact_scale)), dtype) * np.abs(v)
    bits = fp8_round(v, fmt)
    low, high = np.where(spread > 0, v - spread, v), np.where(spread > 0, v + spread, v)  # -0.0 + 0 is +0.0
    near, alt = tie_interval(lambda w: fp8_round(w, fmt), low, high, bits)
    x_hat, x_hat_alt = fp8_value(bits, fmt) * scale, fp8_value(alt, fmt) * scale
    return {"bits": (near, alt.astype(np.uint8)), "x_hat": (near & (x_hat_alt != x_hat), x_hat_alt)}
