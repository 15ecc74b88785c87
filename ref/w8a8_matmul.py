"""The W8A8 matmul (specs/w8a8_matmul.yaml): int8 activations times int8 weights with an
exact int32 accumulator, rescaled once by the per-token and per-channel scales.
"""
import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array, int_array


def w8a8_matmul_args(x_q, w_q, x_scale, w_scale):
    """Validated (x_q, w_q, x_scale, w_scale) of w8a8_matmul; every backend checks through this."""
    x_q = int_array("x_q", x_q, ndim=2, low=-128, high=128)
    w_q = int_array("w_q", w_q, ndim=2, low=-128, high=128)
    if 0 in x_q.shape:
        raise InputError(f"x_q: has shape {x_q.shape}; M and K must be at least 1")
    if w_q.shape[0] == 0:
        raise InputError(f"w_q: has shape {w_q.shape}; N must be at least 1")
    if w_q.shape[1] != x_q.shape[1]:
        raise InputError(f"w_q: has K={w_q.shape[1]}, x_q has K={x_q.shape[1]}")
    if x_q.shape[1] >= 2 ** 17:
        raise InputError(f"x_q: K={x_q.shape[1]} could overflow the int32 accumulator")
    x_scale = float_array("x_scale", x_scale, ndim=1)
    w_scale = float_array("w_scale", w_scale, ndim=1)
    if x_scale.shape[0] != x_q.shape[0]:
        raise InputError(f"x_scale: has {x_scale.shape[0]} entries, expected M={x_q.shape[0]}")
    if w_scale.shape[0] != w_q.shape[0]:
        raise InputError(f"w_scale: has {w_scale.shape[0]} entries, expected N={w_q.shape[0]}")
    return x_q, w_q, x_scale, w_scale


def w8a8_matmul(x_q, w_q, x_scale, w_scale):
    """y = (sum_k x_q[m, k] * w_q[n, k]) * x_scale[m] * w_scale[n]: int8 x int8 with exact
    int32 accumulation (|acc| <= K * 128^2 < 2^31 for K < 2^17), then one float rescale.

    x_q: (M, K) int8 per-token codes; w_q: (N, K) int8 per-channel codes;
    x_scale: (M,); w_scale: (N,). Returns (acc int32 (M, N), y float (M, N)).
    """
    x_q, w_q, x_scale, w_scale = w8a8_matmul_args(x_q, w_q, x_scale, w_scale)
    acc = x_q.astype(np.int64) @ w_q.astype(np.int64).T  # (M, N), exact
    y = acc.astype(x_scale.dtype) * x_scale[:, None] * w_scale[None, :]
    return acc.astype(np.int32), y.astype(x_scale.dtype)


# --- case generators (specs/w8a8_matmul.yaml) ---

def w8a8_case(rng, M, K, N, LOW=-128, HIGH=128):
    """Random int8 codes in [LOW, HIGH) with per-token and per-channel scales."""
    return {"x_q": rng.integers(LOW, HIGH, size=(M, K)).astype(np.int8),
            "w_q": rng.integers(LOW, HIGH, size=(N, K)).astype(np.int8),
            "x_scale": rng.uniform(0.001, 0.05, size=M),
            "w_scale": rng.uniform(0.001, 0.05, size=N)}
