"""Wrong GGUF block quantizers seen in the wild (specs/gguf_quantize.yaml); each must fail
its audit."""
import numpy as np

from llmref.dtypes import round_to
from llmref.ref import gguf_quantize as ref
from llmref.ref._quant import roundf


def gguf_q4_0_adjacent_pairs(x, fmt="Q4_0"):
    """Q4_0 nibbles paired as elements j, j+1 (qs[j] = q[2j] | q[2j+1] << 4) instead of j, j+16."""
    blocks, x_hat = ref.gguf_quantize(x, fmt)
    if fmt != "Q4_0":
        return blocks, x_hat
    q = ref.unpack_ggml_nibbles(blocks[:, 2:])  # (B, 32) in element order
    pairs = q.reshape(len(q), 16, 2)
    blocks = blocks.copy()
    blocks[:, 2:] = pairs[..., 0] | (pairs[..., 1] << 4)
    return blocks, _adjacent_dequantize(blocks).astype(np.asarray(x).dtype)


def _adjacent_dequantize(blocks):
    d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)
    qs = blocks[:, 2:]
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(len(qs), 32).astype(np.float32)
    return ((q - 8) * d).reshape(-1)


def _gguf_with(x, fmt, codes):
    """gguf_quantize with the codes of the float32 blocks computed by `codes(blocks, d, m, id)`."""
    x = np.asarray(x)
    blocks = round_to(x, "float32").reshape(-1, 32)
    d, m, _, _, _ = ref.gguf_decisions(blocks, fmt)
    q = codes(blocks, d, m, ref.reciprocal(d)[:, None])
    packed = ref.pack_gguf(fmt, d, m, q)
    return packed, ref.dequantize_gguf(packed, fmt).astype(x.dtype)


def gguf_round_half_even(x, fmt="Q4_0"):
    """Q8_0 with np.rint (half to even) where ggml uses roundf (half away from zero)."""
    if fmt != "Q8_0":
        return ref.gguf_quantize(x, fmt)
    return _gguf_with(x, fmt, lambda b, d, m, inv: np.rint(b * inv).astype(np.int64))


def gguf_q4_round_half_away(x, fmt="Q4_0"):
    """Q4_0 as clamp(roundf(x * id) + 8, 0, 15): half away from zero, where ggml's truncation of
    x * id + 8.5 rounds ties up."""
    if fmt != "Q4_0":
        return ref.gguf_quantize(x, fmt)
    return _gguf_with(x, fmt, lambda b, d, m, inv: np.clip(
        roundf(b * inv).astype(np.int64) + 8, 0, 15))


def gguf_q4_round_half_even(x, fmt="Q4_0"):
    """Q4_0 / Q4_1 codes by np.rint: clamp(rint(x * id) + 8) and clamp(rint((x - min) * id))."""
    if fmt == "Q4_0":
        return _gguf_with(x, fmt, lambda b, d, m, inv: np.clip(np.rint(b * inv).astype(np.int64) + 8, 0, 15))
    if fmt == "Q4_1":
        return _gguf_with(x, fmt, lambda b, d, m, inv: np.clip(
            np.rint((b - m[:, None]) * inv).astype(np.int64), 0, 15))
    return ref.gguf_quantize(x, fmt)
