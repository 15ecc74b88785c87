"""gguf-py (llama.cpp's gguf package, gguf.quants) as shipped, adapted to llmref's
gguf_quantize spec.

gguf.quants.quantize is llama.cpp's NumPy port of ggml's reference quantizers
(quantize_row_q4_0_ref, ...); convert_hf_to_gguf.py feeds it float32 rows, so the weights
are converted to float32 first (NumPy's astype rounds to nearest even, the spec's rounding).
It returns the blocks as one byte row; the spec wants one row of bytes per 32-weight block.
x_hat is gguf.quants.dequantize of those bytes, in x's dtype.
"""
import numpy as np

from llmref.adapters import declare


@declare
def gguf_quantize(x, fmt):
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    qtype = GGMLQuantizationType[fmt]
    data = quantize(x.astype(np.float32), qtype)    # (L / 32 * bytes_per_block,) uint8
    blocks = data.reshape(x.size // 32, -1)        # (B, bytes_per_block)
    return blocks, dequantize(data, qtype).astype(x.dtype)
