"""The W8A16 weight-only matmul (specs/w8a16_matmul.yaml): activations times a weight held as
int8 codes with one scale per output channel, or per output channel and group of inputs.
"""
import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array, int_array, integer


def w8a16_matmul_args(x, w_q, scales, group_size):
    """Validated (x, w_q, scales, G) of w8a16_matmul, G the group length (K for group_size 0):
    every backend checks through this before any kernel runs."""
    x = float_array("x", x, ndim=2)
    if 0 in x.shape:
        raise InputError(f"x: has shape {x.shape}; M and K must be at least 1")
    w_q = int_array("w_q", w_q, ndim=2)
    if w_q.dtype != np.int8:
        raise InputError(f"w_q: expected int8 codes, got {w_q.dtype}")
    if w_q.shape[0] == 0:
        raise InputError(f"w_q: has shape {w_q.shape}; N must be at least 1")
    if w_q.shape[1] != x.shape[1]:
        raise InputError(f"w_q: has K={w_q.shape[1]}, x has K={x.shape[1]}")
    groups, g = w8_groups(x.shape[1], group_size)
    scales = float_array("scales", scales, ndim=2)
    if scales.shape != (w_q.shape[0], groups):
        raise InputError(f"scales: has shape {scales.shape}, expected (N, groups) = "
                         f"{(w_q.shape[0], groups)}")
    return x, w_q, scales, g


def w8a16_matmul(x, w_q, scales, group_size=0):
    """y = x @ W^T,  W[n, k] = w_q[n, k] * scales[n, k // G]  (G = K for group_size 0).

    x: (M, K) activations; w_q: (N, K) int8 (nn.Linear layout); scales: (N, K/G), one per
    output channel and group. Computed in x's precision (float32 for half inputs, y rounded
    once to x's dtype).
    """
    x, w_q, scales, g = w8a16_matmul_args(x, w_q, scales, group_size)
    work = np.float64 if x.dtype == np.float64 else np.float32
    w = dequantize_w8(w_q, scales.astype(work), g)  # (N, K)
    return (x.astype(work) @ w.T).astype(x.dtype)


def w8_groups(k, group_size):
    """Scale groups per row: 1 (per output channel) for group_size 0, else K / group_size."""
    group_size = integer("group_size", group_size, low=0)
    if group_size == 0:
        return 1, k
    if k % group_size:
        raise InputError(f"group_size: {group_size} does not divide K={k}")
    return k // group_size, group_size


def dequantize_w8(w_q, scales, g):
    """W[n, k] = w_q[n, k] * scales[n, k // G]  (signed int8 codes, no zero-point)."""
    return w_q.astype(scales.dtype) * np.repeat(scales, g, axis=1)  # (N, K)


# --- case generators (specs/w8a16_matmul.yaml) ---

def w8a16_case(rng, M, K, N, GS=0, SCALE_LOW=0.001, SCALE_HIGH=0.02):
    """Random int8 codes over the full range [-128, 127] and positive scales (N, K/G)."""
    groups = 1 if GS == 0 else K // GS
    return {"x": rng.normal(size=(M, K)),
            "w_q": rng.integers(-128, 128, size=(N, K)).astype(np.int8),
            "scales": rng.uniform(SCALE_LOW, SCALE_HIGH, size=(N, groups))}
