"""A per-layer mixed-precision plan (specs/mixed_precision_plan.yaml): each layer quantized at
its own bit width and group size, packed canonically (ref/_quant.py), every stored byte
accounted for.
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref._quant import pack_int2, pack_int4
from llmref.validate import float_array, int_array

PLAN_BITS = (2, 4, 8)  # widths with a canonical byte packing (ref/_quant.py: pack_int2, pack_int4)


def mixed_precision_plan_args(weights, layer_shapes, layers, bits, group_size):
    """Validated (weights, layer_shapes) of mixed_precision_plan, the plan checked against the
    layers; an error names weights, layer_shapes, layers, bits or group_size."""
    weights = float_array("weights", weights, ndim=1)
    layer_shapes = int_array("layer_shapes", layer_shapes, ndim=2, low=1)
    if layer_shapes.shape[1] != 2:
        raise InputError(f"layer_shapes: expected (L, 2) rows of (N, K), got {layer_shapes.shape}")
    n_layers = layer_shapes.shape[0]
    for name, values in (("layers", layers), ("bits", bits), ("group_size", group_size)):
        if not isinstance(values, (list, tuple)) or len(values) != len(layers):
            raise InputError(f"{name}: expected a list as long as layers, got {values!r}")
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
            raise InputError(f"{name}: expected integers, got {values!r}")
    if sorted(layers) != list(range(n_layers)):
        raise InputError(f"layers: must name every layer 0..{n_layers - 1} once, got {layers!r}")
    for layer, b, g in zip(layers, bits, group_size):
        if b not in PLAN_BITS:
            raise InputError(f"bits: layer {layer} has {b!r}, must be one of {PLAN_BITS}")
        n, k = layer_shapes[layer]
        if isinstance(g, bool) or not isinstance(g, int) or g < 1 or k % g or (g * b) % 8:
            raise InputError(f"group_size: layer {layer} has {g!r}, must divide K={k} and fill "
                             f"whole bytes at {b} bits")
    sizes = layer_shapes[:, 0] * layer_shapes[:, 1]
    if weights.shape[0] != sizes.sum():
        raise InputError(f"weights: has {weights.shape[0]} elements, layer_shapes need {sizes.sum()}")
    return weights, layer_shapes


def mixed_precision_plan(weights, layer_shapes, layers, bits, group_size):
    """Quantize each layer at its own (bits, group_size) and account for every stored byte.

    weights: every layer's (N, K) matrix flattened and concatenated, in layer order;
    layer_shapes: (L, 2) int64 rows (N, K); the plan: layers[i] is quantized at bits[i]
    (2, 4 or 8) with groups of group_size[i] along K (see quantize_groups).
    Stored per layer: codes packed along K, ceil-free since G b is a multiple of 8
    (data = N K b / 8), fp16 scales (2 N K / G bytes), zero-points packed like the codes
    (N (K / G) b / 8 bytes, K / G padded up to whole bytes per row).
    Returns packed (all layers' code bytes, layer order), scales (float, layer order), zeros
    (uint8, packed zero-points), layer_bytes (L, 4) int64 rows [data, scales, zeros, total],
    total_bytes (1,) int64.
    """
    weights, layer_shapes = mixed_precision_plan_args(weights, layer_shapes, layers, bits, group_size)
    sizes = layer_shapes[:, 0] * layer_shapes[:, 1]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    plan = dict(zip(layers, zip(bits, group_size)))
    packed, scales, zeros, layer_bytes = [], [], [], []
    for layer, (n, k) in enumerate(layer_shapes):
        b, g = plan[layer]
        w = weights[offsets[layer]:offsets[layer + 1]].reshape(n, k)  # (N, K)
        q, scale, zero = quantize_groups(w, b, g)
        data = pack_codes(q, b)  # (N, K b / 8)
        zero_bytes = pack_codes(pad_groups(zero, b), b)  # (N, ceil(K/G b / 8))
        counts = [data.size, 2 * scale.size, zero_bytes.size]
        layer_bytes.append(counts + [sum(counts)])
        packed.append(data.reshape(-1))
        scales.append(scale.reshape(-1))
        zeros.append(zero_bytes.reshape(-1))
    layer_bytes = np.array(layer_bytes, dtype=np.int64)
    return (np.concatenate(packed), np.concatenate(scales).astype(weights.dtype),
            np.concatenate(zeros), layer_bytes, layer_bytes[:, 3:].sum(axis=0))


def quantize_groups(w, bits, group_size):
    """Asymmetric per-group quantization along the last axis of w (N, K), unsigned codes:
    scale = (max - min) / (2^b - 1) (1 if max = min),  zero = clamp(round(-min / scale), 0, 2^b - 1)
    q = clamp(round_half_even(w / scale) + zero, 0, 2^b - 1).  Returns q (N, K), scale, zero (N, K/G).
    """
    qmax = 2 ** bits - 1
    groups = w.reshape(w.shape[0], -1, group_size)  # (N, K/G, G)
    lo, hi = groups.min(axis=2), groups.max(axis=2)  # (N, K/G)
    scale = np.where(hi == lo, w.dtype.type(1), (hi - lo) / w.dtype.type(qmax))
    zero = np.clip(np.rint(-lo / scale), 0, qmax).astype(np.int64)
    q = np.clip(np.rint(groups / scale[..., None]).astype(np.int64) + zero[..., None], 0, qmax)
    return q.reshape(w.shape), scale, zero


def pack_codes(q, bits):
    """Codes -> bytes along the last axis: int2 four per byte, int4 two per byte (low bits
    first, ref/_quant.py), int8 one per byte."""
    if bits == 2:
        return pack_int2(q)
    if bits == 4:
        return pack_int4(q)
    return q.astype(np.uint8)


def pad_groups(zero, bits):
    """Pad each row of zero-points (N, K/G) with code 0 to a whole number of bytes."""
    per_byte = 8 // bits
    extra = -zero.shape[1] % per_byte
    return np.pad(zero, ((0, 0), (0, extra)))  # (N, ceil(K/G / per_byte) * per_byte)


# --- case generators (specs/mixed_precision_plan.yaml) ---

def mixed_plan_case(rng, SHAPES):
    """Weights for layers of the given (N, K) shapes, std 0.02 like initialised LLM weights."""
    shapes = np.array(SHAPES, dtype=np.int64).reshape(-1, 2)
    weights = [rng.normal(0.0, 0.02, size=int(n * k)) for n, k in shapes]
    return {"weights": np.concatenate(weights), "layer_shapes": shapes}
