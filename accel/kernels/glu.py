"""GLU, SwiGLU and GeGLU of elements (reference: llmref.ref.glu), shared by numba-cpu and
numba-cuda (see llmref.accel.kernels).

Elements are visited as first, first + step, ... of the flat output: numba-cpu runs these
loops at float64 only (below it, a * sigmoid(s) on a vectorised exp:
llmref.accel.numba_cpu._activation), a numba-cuda thread the ones of its grid-stride (thread
index, grid size). The activation of the gate is written out here rather than called (a
shared function calls no other): silu as in llmref.accel.kernels.silu, the tanh GELU as in
llmref.accel.kernels.gelu.
"""
import math

from llmref.ref._activation import GELU_TANH_CUBIC, SQRT_2_OVER_PI


def glu_rows(rows, first, step, out):
    """out[r, j] = rows[r, j] * sigmoid(rows[r, H + j]) for rows (R, 2H), out (R, H)."""
    half = out.shape[1]
    for i in range(first, out.shape[0] * half, step):
        r, j = i // half, i % half
        out[r, j] = rows[r, j] / (1 + math.exp(-rows[r, half + j]))


def swiglu_elements(gate, up, first, step, out):
    """out[i] = silu(gate[i]) * up[i]."""
    for i in range(first, gate.shape[0], step):
        g = gate[i]
        out[i] = g / (1 + math.exp(-g)) * up[i]


def geglu_elements(gate, up, first, step, out):
    """out[i] = gelu_tanh(gate[i]) * up[i]."""
    for i in range(first, gate.shape[0], step):
        g = gate[i]
        out[i] = 0.5 * g * (1 + math.tanh(SQRT_2_OVER_PI * (g + GELU_TANH_CUBIC * g * g * g))) * up[i]
