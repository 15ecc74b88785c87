"""SiLU of elements (reference: llmref.ref.silu), shared by numba-cpu and numba-cuda (see
llmref.accel.kernels).

Elements are visited as first, first + step, ... of the flat x: numba-cpu walks them all (0,
1), a numba-cuda thread the ones of its grid-stride (thread index, grid size). numba-cpu
runs this loop at float64 only; below it, x * sigmoid(x) on a vectorised exp.
"""
import math


def silu_elements(x, first, step, out):
    """out[i] = x[i] / (1 + exp(-x[i])); exp overflowing to inf gives -0.0."""
    for i in range(first, x.shape[0], step):
        v = x[i]
        out[i] = v / (1 + math.exp(-v))
