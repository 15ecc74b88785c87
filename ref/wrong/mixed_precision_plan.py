"""Wrong mixed-precision plans seen in the wild (specs/mixed_precision_plan.yaml); each must
fail its audit."""
import numpy as np

from llmref.ref import mixed_precision_plan as ref
from llmref.ref._quant import roundf


def mixed_plan_round_half_away(weights, layer_shapes, layers, bits, group_size):
    """The plan with roundf (half away from zero) for the zero-points and the codes."""
    def quantize_groups(w, b, g):
        qmax = 2 ** b - 1
        groups = w.reshape(w.shape[0], -1, g)
        lo, hi = groups.min(axis=2), groups.max(axis=2)
        scale = np.where(hi == lo, 1.0, (hi - lo) / qmax)
        zero = np.clip(roundf(-lo / scale), 0, qmax).astype(np.int64)
        q = np.clip(roundf(groups / scale[..., None]).astype(np.int64) + zero[..., None], 0, qmax)
        return q.reshape(w.shape), scale, zero

    saved = ref.quantize_groups
    try:
        ref.quantize_groups = quantize_groups
        return ref.mixed_precision_plan(weights, layer_shapes, layers, bits, group_size)
    finally:
        ref.quantize_groups = saved


def mixed_plan_zeros_not_counted(weights, layer_shapes, layers, bits, group_size):
    """The zero-point bytes are stored but left out of the byte counts."""
    packed, scales, zeros, layer_bytes, _ = ref.mixed_precision_plan(
        weights, layer_shapes, layers, bits, group_size)
    layer_bytes = layer_bytes.copy()
    layer_bytes[:, 3] -= layer_bytes[:, 2]
    layer_bytes[:, 2] = 0
    return packed, scales, zeros, layer_bytes, layer_bytes[:, 3:].sum(axis=0)


def mixed_plan_scales_per_tensor(weights, layer_shapes, layers, bits, group_size):
    """Scale bytes counted as one fp16 scale per tensor instead of one per group."""
    packed, scales, zeros, layer_bytes, _ = ref.mixed_precision_plan(
        weights, layer_shapes, layers, bits, group_size)
    layer_bytes = layer_bytes.copy()
    layer_bytes[:, 1] = 2
    layer_bytes[:, 3] = layer_bytes[:, :3].sum(axis=1)
    return packed, scales, zeros, layer_bytes, layer_bytes[:, 3:].sum(axis=0)
