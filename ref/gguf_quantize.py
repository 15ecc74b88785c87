"""GGUF block quantization Q4_0 / Q4_1 / Q8_0 (specs/gguf_quantize.yaml).

GGUF blocks are defined by ggml's C reference (ggml-quants.c, quantize_row_*_ref), which
computes in float32; so does this reference, whatever the input precision, so the bytes match
ggml bit for bit. Block layouts (ggml-common.h):
  Q4_0: 32 weights -> 18 bytes {fp16 d; uint8 qs[16]},            x = (q - 8) * d
  Q4_1: 32 weights -> 20 bytes {fp16 d; fp16 m; uint8 qs[16]},     x = q * d + m
  Q8_0: 32 weights -> 34 bytes {fp16 d; int8 qs[32]},              x = q * d
  4-bit nibbles: qs[j] = q[j] | q[j + 16] << 4   (element j low, element j + 16 high)

Every rounding that decides a byte here is llmref's own: float64 -> float32 / float16 by
llmref.dtypes.round_to, never a library cast whose behaviour changes between releases. The
tie model of gguf_ties is described in ref/_quant.py.
"""
import numpy as np

from llmref.dtypes import UNIT_ROUNDOFF, round_to
from llmref.errors import InputError
from llmref.ref._quant import gamma, representable, roundf, tie_interval
from llmref.validate import float_array, int_array

QK = 32  # weights per GGUF block
BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}
GGUF_FORMATS = tuple(BLOCK_BYTES)


def gguf_quantize_args(x, fmt):
    """Validated x (1-D, a nonzero multiple of 32 long) of gguf_quantize; every backend checks
    through this before any kernel runs."""
    if fmt not in GGUF_FORMATS:
        raise InputError(f"fmt: must be one of {GGUF_FORMATS}, got {fmt!r}")
    x = float_array("x", x, ndim=1)
    if x.size == 0 or x.size % QK:
        raise InputError(f"x: length {x.size} is not a positive multiple of the block size {QK}")
    return x


def gguf_quantize(x, fmt="Q4_0"):
    """GGUF block quantization of a flat tensor: (blocks uint8 (B, bytes), x_hat).

    x is rounded to float32 first (GGUF's input type), blocks of 32 are quantized by ggml's
    reference rule (gguf_decisions) and x_hat is the dequantized result in x's dtype.
    """
    x = gguf_quantize_args(x, fmt)
    blocks = round_to(x, "float32").reshape(-1, QK)  # (B, 32)
    packed = pack_gguf(fmt, *gguf_codes(blocks, fmt))
    return packed, dequantize_gguf(packed, fmt).astype(x.dtype)


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


def reciprocal(d):
    """ggml's id = d ? 1.0f/d : 0.0f, in float32."""
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def pack_gguf(fmt, d, m, q):
    """(B, bytes) blocks: fp16 d [, fp16 m], then the codes (nibbles or int8)."""
    parts = [fp16_bytes(d)] + ([fp16_bytes(m)] if fmt == "Q4_1" else [])
    codes = q.astype(np.int8).view(np.uint8) if fmt == "Q8_0" else pack_ggml_nibbles(q)
    return np.concatenate(parts + [codes], axis=1)


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


def gguf_dequantize(blocks, fmt="Q4_0"):
    """(B, bytes) uint8 blocks -> (B * 32,) float32."""
    if fmt not in GGUF_FORMATS:
        raise InputError(f"fmt: must be one of {GGUF_FORMATS}, got {fmt!r}")
    blocks = int_array("blocks", blocks, ndim=2)
    if blocks.dtype != np.uint8 or blocks.shape[1] != BLOCK_BYTES[fmt]:
        raise InputError(f"blocks: {fmt} needs uint8 rows of {BLOCK_BYTES[fmt]} bytes, "
                         f"got {blocks.dtype} {blocks.shape}")
    return dequantize_gguf(blocks, fmt)


# ----------------------------------------------------------------------------- ties

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
    x = gguf_quantize_args(x, fmt)
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
