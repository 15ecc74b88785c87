"""GLU, SwiGLU and GeGLU on numba-cpu (reference: llmref.ref.glu): a * sigmoid(s) [* up] on
the float32 vectorised exp for float32/float16/bfloat16 inputs, the shared loops of
llmref.accel.kernels.glu at float64 (both in llmref.accel.numba_cpu._activation):

    glu(x) = x[..., :H] * sigmoid(x[..., H:]),   swiglu = silu(gate) * up,
    geglu = gelu_tanh(gate) * up = gate * sigmoid(2u(gate)) * up

Checked by the reference's glu_args / swiglu_args / geglu_args."""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import glu as kernels
from llmref.accel.numba_cpu._activation import elementwise_gated, times_sigmoid, x_times_sigmoid
from llmref.ref.glu import geglu_args, glu_args, swiglu_args

_glu_rows = numba.njit(cache=True)(kernels.glu_rows)
_swiglu_elements = numba.njit(cache=True)(kernels.swiglu_elements)
_geglu_elements = numba.njit(cache=True)(kernels.geglu_elements)


def glu(x):
    x = glu_args(x)
    half = x.shape[-1] // 2
    rows = np.ascontiguousarray(widen(x).reshape(math.prod(x.shape[:-1]), 2 * half))  # (rows, 2H)
    if x.dtype == np.float64:
        out = np.empty((rows.shape[0], half), rows.dtype)
        _glu_rows(rows, 0, 1, out)  # serial: float64 is the goldens' precision, not a hot path
    else:
        out = times_sigmoid(rows, rows, s_first=half)  # (rows, H)
    return out.reshape(x.shape[:-1] + (half,)).astype(x.dtype, copy=False)


def swiglu(gate, up):
    gate, up = swiglu_args(gate, up)
    if gate.dtype == np.float64:
        return elementwise_gated(_swiglu_elements, gate, up)
    return x_times_sigmoid(gate, up)


def geglu(gate, up):
    gate, up = geglu_args(gate, up)
    if gate.dtype == np.float64:
        return elementwise_gated(_geglu_elements, gate, up)
    return x_times_sigmoid(gate, up, tanh_form=True)
