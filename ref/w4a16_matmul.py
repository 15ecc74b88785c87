"""The W4A16 weight-only matmul (specs/w4a16_matmul.yaml): activations times a weight held
as canonical packed INT4 codes (ref/_quant.py: pack_int4) with per-group scales and
zero-points.
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref._quant import pack_int4, unpack_int4
from llmref.validate import float_array, int_array, integer


def w4a16_matmul_args(x, w_packed, scales, zeros, group_size):
    """Validated (x, w_packed, scales, zeros, group_size) of w4a16_matmul: every backend checks
    through this before any kernel runs. M, K, N >= 1; group_size an even integer >= 2 dividing
    K (a group is whole bytes of the packed row); w_packed (N, K/2) uint8; scales and zeros
    (N, K/group_size), zeros codes 0..15."""
    x = float_array("x", x, ndim=2)
    m, k = x.shape
    if m == 0 or k == 0:
        raise InputError(f"x: has shape {x.shape}; M and K must be at least 1")
    w_packed = int_array("w_packed", w_packed, ndim=2)
    if w_packed.dtype != np.uint8:
        raise InputError(f"w_packed: expected uint8 bytes, got {w_packed.dtype}")
    if 2 * w_packed.shape[1] != k:
        raise InputError(f"w_packed: has {w_packed.shape[1]} bytes per row; K={k} needs {k / 2:g}")
    n = w_packed.shape[0]
    if n == 0:
        raise InputError(f"w_packed: has shape {w_packed.shape}; N must be at least 1")
    group_size = integer("group_size", group_size, low=2)
    if group_size % 2:
        raise InputError(f"group_size: must be even (a group is whole packed bytes), got {group_size}")
    if k % group_size:
        raise InputError(f"group_size: {group_size} does not divide K={k}")
    groups = k // group_size
    scales = float_array("scales", scales, ndim=2)
    if scales.shape != (n, groups):
        raise InputError(f"scales: has shape {scales.shape}, expected (N, K/group_size) = {(n, groups)}")
    zeros = int_array("zeros", zeros, ndim=2, low=0, high=16)
    if zeros.shape != (n, groups):
        raise InputError(f"zeros: has shape {zeros.shape}, expected (N, K/group_size) = {(n, groups)}")
    return x, w_packed, scales, zeros, group_size


def w4a16_matmul(x, w_packed, scales, zeros, group_size=128):
    """y = x @ W^T with W dequantized from canonical packed INT4 (see dequantize_w4).

    x: (M, K) activations; w_packed: (N, K/2) uint8; scales: (N, K/G); zeros: (N, K/G) codes
    0..15. Products and sums are exact in float64 here; implementations accumulate in float32
    and round y once to the activation dtype.
    """
    x, w_packed, scales, zeros, group_size = w4a16_matmul_args(x, w_packed, scales, zeros,
                                                               group_size)
    w = dequantize_w4(w_packed, scales.astype(np.float64), zeros, group_size)  # (N, K)
    return (x.astype(np.float64) @ w.T).astype(x.dtype)


def dequantize_w4(w_packed, scales, zeros, group_size):
    """W[n, k] = (q[n, k] - zeros[n, k // G]) * scales[n, k // G], q unpacked canonically."""
    k = 2 * w_packed.shape[1]
    q = unpack_int4(w_packed, k).astype(np.int64)  # (N, K)
    z = np.repeat(zeros.astype(np.int64), group_size, axis=1)  # (N, K)
    s = np.repeat(scales, group_size, axis=1)  # (N, K)
    return (q - z) * s


# --- case generators (specs/w4a16_matmul.yaml) ---

def w4a16_case(rng, M, K, N, GS):
    """Random W4A16 operands: codes and zero-points uniform in 0..15, scales ~ 0.01 (fp16-sized)."""
    groups = K // GS
    q = rng.integers(0, 16, size=(N, K))
    return {"x": rng.normal(size=(M, K)),
            "w_packed": pack_int4(q),
            "scales": rng.uniform(0.005, 0.02, size=(N, groups)),
            "zeros": rng.integers(0, 16, size=(N, groups)).astype(np.uint8)}
