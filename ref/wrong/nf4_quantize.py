"""Wrong NF4 quantizers seen in the wild (specs/nf4_quantize.yaml); each must fail its audit."""
import numpy as np

from llmref.ref import nf4_quantize as ref


def nf4_perturbed_codebook(x, block_size=64):
    """NF4 with one codebook entry (index 13, 0.5626...) off by 0.01."""
    saved = ref.NF4_CODEBOOK.copy()
    try:
        ref.NF4_CODEBOOK[13] += 0.01
        return ref.nf4_quantize(x, block_size)
    finally:
        ref.NF4_CODEBOOK[:] = saved


def nf4_ties_to_upper(x, block_size=64):
    """NF4 with exact midpoints sent to the upper code: the nearest code by argmin over the
    codebook reversed (the last minimum in index order)."""
    x = np.asarray(x)
    blocks = x.reshape(-1, block_size)
    absmax = np.abs(blocks).max(axis=1)
    scaled = blocks / np.where(absmax == 0, x.dtype.type(1), absmax)[:, None]
    book = ref.NF4_CODEBOOK.astype(x.dtype)
    codes = 15 - np.abs(scaled[..., None] - book[::-1]).argmin(axis=-1)
    x_hat = (book[codes] * absmax[:, None]).reshape(-1)
    return ref.pack_nf4(codes), absmax, x_hat.astype(x.dtype)


def nf4_low_nibble_first(x, block_size=64):
    """NF4 packed with the first element in the low nibble (GGML's order, not bitsandbytes')."""
    packed, absmax, x_hat = ref.nf4_quantize(x, block_size)
    return ((packed << 4) | (packed >> 4)).astype(np.uint8), absmax, x_hat
