"""QAT fake-quantization with its straight-through gradient (specs/fake_quant.yaml), and the
tie model of a float32 evaluation (ref/_quant.py describes the model).

The float arithmetic runs in the precision of the float input. Rounding is round-half-to-even.
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref._quant import is_power_of_two, representable, rounding_bounds, tie_interval
from llmref.validate import float_array, integer, positive


def fake_quant_args(x, grad_y, scale, zero_point, quant_min, quant_max):
    """Validated (x, grad_y) of fake_quant: the same shape, a finite positive scale (also once
    rounded to x's dtype, where it is used), integer zero_point, quant_min < quant_max and
    quant_min <= zero_point <= quant_max."""
    x = float_array("x", x)
    grad_y = float_array("grad_y", grad_y)
    if grad_y.shape != x.shape:
        raise InputError(f"grad_y: has shape {grad_y.shape}, expected the shape of x {x.shape}")
    positive("scale", scale)
    with np.errstate(over="ignore"):  # an overflow to inf is the error below
        rounded = x.dtype.type(scale)
    if not 0 < rounded < np.inf:
        raise InputError(f"scale: {scale!r} rounds to {float(rounded)} at {x.dtype}, where the "
                         "codes are computed; it must stay finite and positive")
    for name, value in (("zero_point", zero_point), ("quant_min", quant_min), ("quant_max", quant_max)):
        integer(name, value)
    if not quant_min < quant_max:
        raise InputError(f"quant_max: must exceed quant_min, got [{quant_min}, {quant_max}]")
    if not quant_min <= zero_point <= quant_max:
        raise InputError(f"zero_point: {zero_point} is outside [{quant_min}, {quant_max}]")
    return x, grad_y


def fake_quant(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """Fake-quantize x and back-propagate grad_y through it: (y, grad_x).

    y      = (clamp(round_half_even(x/scale) + zero_point, quant_min, quant_max) - zero_point) * scale
    grad_x = grad_y * 1[quant_min <= round_half_even(x/scale) + zero_point <= quant_max]
    The straight-through estimator passes the gradient unchanged where the rounded code lies
    inside the range and blocks it where the clamp is active (torch.fake_quantize_per_tensor_affine).
    """
    x, grad_y = fake_quant_args(x, grad_y, scale, zero_point, quant_min, quant_max)
    s = x.dtype.type(scale)
    code = np.rint(x / s) + x.dtype.type(zero_point)  # unclamped code, float
    inside = (code >= quant_min) & (code <= quant_max)
    y = (np.clip(code, quant_min, quant_max) - x.dtype.type(zero_point)) * s
    return y.astype(x.dtype), np.where(inside, grad_y, 0).astype(x.dtype)


def fake_quant_ties(dtype, x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """{y, grad_x: (near_tie, alternative)} of a `dtype` evaluation of fake_quant.

    The reference rounds t = x / S with S the float64 param. A dtype implementation first
    rounds S to dtype (S' = S (1 + s), |s| <= u, s = 0 where S is a dtype value), then forms
    x / S' (1 rounding) or x * (1/S') (2; torch's kernels use inv_scale = 1.0f / scale), so
    |t' - t| <= gamma_k |t| with k = 1 + 2 = 3, 2 for a representable S, 0 for a power of two
    S with t a dtype value (exact). Adding Z before rounding adds u |t + Z| (see
    rounding_bounds). The straight-through mask is decided by the same rounded code, so
    grad_x flips where the alternative code crosses quant_min or quant_max.
    """
    x, grad_y = fake_quant_args(x, grad_y, scale, zero_point, quant_min, quant_max)
    t = x / scale
    exact_scale = bool(representable(scale, dtype))
    exact_t = exact_scale & bool(is_power_of_two(scale)) & representable(t, dtype)
    k = np.where(exact_t, 0, 2 + (not exact_scale))
    low, high = rounding_bounds(t, k, zero_point, dtype)
    near, r_alt = tie_interval(np.rint, low, high, np.rint(t))
    code, code_alt = np.rint(t) + zero_point, r_alt + zero_point
    y = (np.clip(code, quant_min, quant_max) - zero_point) * scale
    y_alt = (np.clip(code_alt, quant_min, quant_max) - zero_point) * scale
    inside = (code >= quant_min) & (code <= quant_max)
    inside_alt = (code_alt >= quant_min) & (code_alt <= quant_max)
    return {"y": (near & (y_alt != y), y_alt),
            "grad_x": (near & (inside_alt != inside), np.where(inside_alt, grad_y, 0.0))}
