"""The host side that the numba-cuda activation families (relu, gelu, silu) share."""
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid


def elementwise(kernel, x, what):
    """kernel(flat, out) over checked x flattened in its compute dtype (float32 for
    float16/bfloat16), one thread per element, out guarded; the result rounded once to x's
    dtype, in x's shape."""
    flat = widen(x).reshape(-1)  # (n,)
    out = Guarded(flat.shape, flat.dtype, what)
    kernel[grid(flat.size), THREADS](cuda.to_device(flat), out.device)
    return out.result().reshape(x.shape).astype(x.dtype)
