"""Wrong W4A16 matmuls seen in the wild (specs/w4a16_matmul.yaml); each must fail its audit."""
import numpy as np

from llmref.ref import w4a16_matmul as ref


def w4a16_nibbles_swapped(x, w_packed, scales, zeros, group_size=128):
    """Unpacks the high nibble as the even element."""
    swapped = ((w_packed << 4) | (w_packed >> 4)).astype(np.uint8)
    return ref.w4a16_matmul(x, swapped, scales, zeros, group_size)


def w4a16_zero_point_fixed_at_8(x, w_packed, scales, zeros, group_size=128):
    """Assumes symmetric GPTQ weights: every zero-point taken as 8, the stored ones ignored."""
    return ref.w4a16_matmul(x, w_packed, scales, np.full_like(zeros, 8), group_size)
