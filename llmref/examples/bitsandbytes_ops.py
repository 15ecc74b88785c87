"""bitsandbytes (its CPU build) as shipped, adapted to llmref's specs.

* nf4_quantize: bitsandbytes.functional.quantize_4bit(quant_type="nf4", no double
  quantization of absmax) and dequantize_4bit. bitsandbytes packs the first element of a pair
  into the high nibble, as the spec. Its quantizers take float32, float16 and bfloat16; the
  spec's dtypes are float64 and float32, so float32 is declared.
* w8a8_matmul: bitsandbytes.functional.int8_linear_matmul (int8 x int8 -> int32, A B^T) for
  the accumulator and int8_mm_dequant for y. LLM.int8's statistics are absmax values
  (absmax = 127 S) and int8_mm_dequant multiplies by 1/127^2 as the float32 literal
  6.200124e-05, so the spec's scales are passed as 127 * S.
"""
from llmref.adapters import torch_adapter
from llmref.errors import Unsupported


@torch_adapter(dtypes=["float32"])
def nf4_quantize(x, block_size):
    import bitsandbytes.functional as bnbf

    try:
        packed, state = bnbf.quantize_4bit(x, blocksize=block_size, quant_type="nf4",
                                           compress_statistics=False)
    except ValueError as exc:  # bitsandbytes' block sizes are 32, 64, ..., 4096 (_ops.py)
        if "invalid blocksize" in str(exc):
            raise Unsupported(f"bitsandbytes.functional.quantize_4bit: {exc}") from None
        raise
    x_hat = bnbf.dequantize_4bit(packed, state)
    return packed.reshape(-1), state.absmax, x_hat.reshape(x.shape)


@torch_adapter(dtypes=["float32"])
def w8a8_matmul(x_q, w_q, x_scale, w_scale):
    """float32 only: the op's statistics are float32 tensors. functional.int8_mm_dequant
    always returns float16; the registered op takes the output dtype."""
    import bitsandbytes.functional as bnbf
    import torch

    acc = bnbf.int8_linear_matmul(x_q, w_q)  # (M, N) int32 = x_q @ w_q^T
    y = torch.ops.bitsandbytes.int8_mm_dequant(acc, 127 * x_scale, 127 * w_scale,
                                               dtype=torch.float32)
    return acc, y
