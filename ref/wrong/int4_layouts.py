"""Wrong INT4 layouts seen in the wild (specs/int4_layouts.yaml); each must fail its audit."""
import numpy as np

from llmref.ref import int4_layouts as ref


def layouts_gptq_true_zeros(q, zeros):
    """qzeros holding the zero itself (gptq_v2), not zero - 1."""
    out = ref.int4_layouts(q, zeros)
    _, out["gptq_qzeros"] = ref.to_gptq(q, (zeros.astype(np.int64) + 1) & 0xF)
    return out


def layouts_awq_sequential(q, zeros):
    """AWQ slots in sequential column order 0..7."""
    out = ref.int4_layouts(q, zeros)
    out["awq_qweight"] = ref.words_from_nibbles(q.T.reshape(q.shape[1], -1, 8))
    out["awq_qzeros"] = ref.words_from_nibbles(zeros.T.reshape(zeros.shape[1], -1, 8))
    return out


def layouts_high_nibble_first(q, zeros):
    """packed[n, j] = q[n, 2j] << 4 | q[n, 2j+1]."""
    out = ref.int4_layouts(q, zeros)
    out["packed"] = ((out["packed"] << 4) | (out["packed"] >> 4)).astype(np.uint8)
    return out
