"""The exact GELU and its tanh approximation of elements (reference: llmref.ref.gelu), shared
by numba-cpu and numba-cuda (see llmref.accel.kernels).

Elements are visited as first, first + step, ... of the flat x: numba-cpu walks them all (0,
1), a numba-cuda thread the ones of its grid-stride (thread index, grid size). numba-cpu
runs the tanh loop at float64 only; below it, x * sigmoid(2u) on a vectorised exp.
"""
import math

from llmref.ref._activation import GELU_TANH_CUBIC, SQRT_2_OVER_PI


def gelu_elements(x, first, step, out):
    """out[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2)))."""
    for i in range(first, x.shape[0], step):
        v = x[i]
        out[i] = 0.5 * v * (1 + math.erf(v / math.sqrt(2.0)))


def gelu_tanh_elements(x, first, step, out):
    """out[i] = 0.5 * x[i] * (1 + tanh(sqrt(2/pi) * (x[i] + 0.044715 * x[i]^3)))."""
    for i in range(first, x.shape[0], step):
        v = x[i]
        out[i] = 0.5 * v * (1 + math.tanh(SQRT_2_OVER_PI * (v + GELU_TANH_CUBIC * v * v * v)))
