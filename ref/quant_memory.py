"""Bytes of a quantized weight (specs/quant_memory.yaml): packed codes, fp16 scales and packed
zero-points per layer, next to the rule-of-thumb estimate.
"""
import numpy as np

from llmref.errors import InputError
from llmref.validate import int_array, integer


def quant_memory_args(numel, bits, group_size, zero_points):
    """Validated (numel, bits) of quant_memory as int64: bits 2..8 or 16 per layer, a positive
    group_size dividing every quantized numel, a bool zero_points."""
    numel = int_array("numel", numel, ndim=1, low=0)
    bits = int_array("bits", bits, ndim=1, low=2, high=17)
    if bits.shape != numel.shape:
        raise InputError(f"bits: has {bits.size} entries, numel has {numel.size}")
    bad = (bits != 16) & (bits > 8)
    if bad.any():
        raise InputError(f"bits: {int(bits[bad][0])} is neither 2..8 nor 16")
    integer("group_size", group_size, low=1)
    if not isinstance(zero_points, (bool, np.bool_)):
        raise InputError(f"zero_points: must be a bool, got {zero_points!r}")
    quantized = bits != 16
    if np.any(numel[quantized] % group_size):
        raise InputError(f"group_size: {group_size} does not divide every quantized numel")
    return numel.astype(np.int64), bits.astype(np.int64)


def quant_memory(numel, bits, group_size=128, zero_points=True):
    """Exact bytes of a per-layer bit-width plan, and the rule-of-thumb estimate.

    For a weight of `numel` elements at b < 16 bits, quantized in groups of `group_size`:
      data   = ceil(numel * b / 8)                   packed codes
      scales = 2 * numel / group_size                one fp16 scale per group
      zeros  = ceil((numel / group_size) * b / 8)    packed b-bit zero-points (if zero_points)
    b = 16 means an unquantized fp16/bf16 weight: 2 bytes per element, no scales or zeros.
    estimate = numel * 4 B * 1.2 / (32 / b)          (fp32 bytes scaled to b bits, +20 %)
    """
    numel, bits = quant_memory_args(numel, bits, group_size, zero_points)
    quantized = bits != 16
    groups = numel // group_size
    data = np.where(quantized, -(-numel * bits // 8), 2 * numel)
    scales = np.where(quantized, 2 * groups, 0)
    zeros = np.where(quantized & bool(zero_points), -(-groups * bits // 8), 0)
    estimate = numel.astype(np.float64) * 4 * 1.2 / (32 / bits)
    return data, scales, zeros, data + scales + zeros, estimate


# --- case generators (specs/quant_memory.yaml) ---

def seed_table_case(rng, L=15):
    """The seed's table: 1.5B, 7B, 9B, 40B and 70B parameters at 4, 8 and 16 bits (L = 15 rows)."""
    sizes = np.array([1.5e9, 7e9, 9e9, 40e9, 70e9], dtype=np.int64)
    return {"numel": np.repeat(sizes, 3), "bits": np.tile(np.array([4, 8, 16]), 5)}
