"""GLU, SwiGLU and GeGLU on numba-cpu (reference: llmref.ref.glu): the shared element loops
of llmref.accel.kernels.glu, inputs widened to the compute dtype (float32 for
float16/bfloat16) and the result rounded once. Checked by the reference's glu_args /
swiglu_args / geglu_args."""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import glu as kernels
from llmref.ref.glu import geglu_args, glu_args, swiglu_args

_glu_rows = numba.njit(cache=True)(kernels.glu_rows)
_swiglu_elements = numba.njit(cache=True)(kernels.swiglu_elements)
_geglu_elements = numba.njit(cache=True)(kernels.geglu_elements)


def _gated(elements, gate, up):
    """elements(gate, up, 0, 1, out) over checked gate and up (one shape, one dtype), flat."""
    flat_gate, flat_up = widen(gate).reshape(-1), widen(up).reshape(-1)  # (n,) each
    out = np.empty_like(flat_gate)
    elements(flat_gate, flat_up, 0, 1, out)
    return out.reshape(gate.shape).astype(gate.dtype)


def glu(x):
    x = glu_args(x)
    half = x.shape[-1] // 2
    rows = widen(x).reshape(math.prod(x.shape[:-1]), 2 * half)  # (rows, 2H)
    out = np.empty((rows.shape[0], half), rows.dtype)
    _glu_rows(rows, 0, 1, out)
    return out.reshape(x.shape[:-1] + (half,)).astype(x.dtype)


def swiglu(gate, up):
    return _gated(_swiglu_elements, *swiglu_args(gate, up))


def geglu(gate, up):
    return _gated(_geglu_elements, *geglu_args(gate, up))
