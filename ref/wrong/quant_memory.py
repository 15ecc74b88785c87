"""Wrong quantized-memory accounts seen in the wild (specs/quant_memory.yaml); each must fail
its audit."""
import numpy as np

from llmref.ref import quant_memory as ref


def memory_without_scales(numel, bits, group_size=128, zero_points=True):
    """total = packed codes only."""
    data, scales, zeros, _, estimate = ref.quant_memory(numel, bits, group_size, zero_points)
    return data, scales, zeros, data, estimate


def memory_unpacked_zeros(numel, bits, group_size=128, zero_points=True):
    """One byte per zero-point."""
    data, scales, _, _, estimate = ref.quant_memory(numel, bits, group_size, zero_points)
    groups = np.asarray(numel, np.int64) // group_size
    zeros = np.where((np.asarray(bits) != 16) & zero_points, groups, 0)
    return data, scales, zeros, data + scales + zeros, estimate
