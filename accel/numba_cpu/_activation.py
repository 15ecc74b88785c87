"""The host side that the numba-cpu activation families (relu, gelu, silu) share."""
import numpy as np

from llmref.accel._host import widen


def elementwise(elements, x):
    """elements(flat, 0, 1, out), a compiled loop of llmref.accel.kernels, over checked x
    flattened in its compute dtype (float32 for float16/bfloat16); out rounded once to x's
    dtype, in x's shape."""
    flat = widen(x).reshape(-1)  # (n,)
    out = np.empty_like(flat)
    elements(flat, 0, 1, out)
    return out.reshape(x.shape).astype(x.dtype)
