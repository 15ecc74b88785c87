"""GLU, SwiGLU and GeGLU on numba-cpu (reference: llmref.ref.glu): GLU and SwiGLU are the
shared loops of llmref.accel.kernels.glu; GeGLU is gate * sigmoid(2u) * up, vectorised
(llmref.accel.numba_cpu._activation). Inputs are widened to the compute dtype (float32 for
float16/bfloat16) and the result rounded once. Checked by the reference's glu_args /
swiglu_args / geglu_args."""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import glu as kernels
from llmref.accel.numba_cpu._activation import gelu_tanh
from llmref.ref.glu import geglu_args, glu_args, swiglu_args

_glu_rows = numba.njit(cache=True)(kernels.glu_rows)
_swiglu_elements = numba.njit(cache=True)(kernels.swiglu_elements)


def glu(x):
    x = glu_args(x)
    half = x.shape[-1] // 2
    rows = widen(x).reshape(math.prod(x.shape[:-1]), 2 * half)  # (rows, 2H)
    out = np.empty((rows.shape[0], half), rows.dtype)
    _glu_rows(rows, 0, 1, out)
    return out.reshape(x.shape[:-1] + (half,)).astype(x.dtype, copy=False)


def swiglu(gate, up):
    gate, up = swiglu_args(gate, up)
    flat_gate, flat_up = widen(gate).reshape(-1), widen(up).reshape(-1)  # (n,) each
    out = np.empty_like(flat_gate)
    _swiglu_elements(flat_gate, flat_up, 0, 1, out)
    return out.reshape(gate.shape).astype(gate.dtype, copy=False)


def geglu(gate, up):
    gate, up = geglu_args(gate, up)
    return gelu_tanh(gate, up)
