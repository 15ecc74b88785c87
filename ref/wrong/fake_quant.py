"""Wrong QAT fake-quantizers seen in the wild (specs/fake_quant.yaml); each must fail its
audit."""
import numpy as np

from llmref.ref import fake_quant as ref
from llmref.ref._quant import roundf


def fake_quant_round_half_away(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """C roundf (half away from zero) for x / S: 0.5 -> 1, -2.5 -> -3, 127.5 -> 128."""
    x, grad_y = np.asarray(x), np.asarray(grad_y)
    s = x.dtype.type(scale)
    code = roundf(x / s) + x.dtype.type(zero_point)
    inside = (code >= quant_min) & (code <= quant_max)
    y = (np.clip(code, quant_min, quant_max) - x.dtype.type(zero_point)) * s
    return y.astype(x.dtype), np.where(inside, grad_y, 0).astype(x.dtype)


def fake_quant_unmasked_ste(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """The straight-through gradient passed everywhere, also where the clamp is active."""
    y, _ = ref.fake_quant(x, grad_y, scale, zero_point, quant_min, quant_max)
    return y, np.asarray(grad_y).copy()


def fake_quant_mask_on_unrounded(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """The mask tested on x/S + Z before rounding: 127.4 -> grad 0 although it rounds to 127."""
    y, _ = ref.fake_quant(x, grad_y, scale, zero_point, quant_min, quant_max)
    code = x / scale + zero_point
    return y, np.where((code >= quant_min) & (code <= quant_max), grad_y, 0).astype(x.dtype)
