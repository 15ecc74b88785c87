"""The exact and the tanh GELU on numba-cpu (reference: llmref.ref.gelu): the exact one is
the shared element loop of llmref.accel.kernels.gelu over the flat input; the tanh one is
x * sigmoid(2u) on the float32 vectorised exp for float32/float16/bfloat16 inputs and the
shared loop at float64 (both in llmref.accel.numba_cpu._activation). Checked by the
reference's gelu_args / gelu_tanh_args."""
import numba
import numpy as np

from llmref.accel.kernels import gelu as kernels
from llmref.accel.numba_cpu._activation import elementwise, x_times_sigmoid
from llmref.ref.gelu import gelu_args, gelu_tanh_args

_gelu_elements = numba.njit(cache=True)(kernels.gelu_elements)
_gelu_tanh_elements = numba.njit(cache=True)(kernels.gelu_tanh_elements)


def gelu(x):
    return elementwise(_gelu_elements, gelu_args(x))


def gelu_tanh(x):
    x = gelu_tanh_args(x)
    if x.dtype == np.float64:
        return elementwise(_gelu_tanh_elements, x)
    return x_times_sigmoid(x, tanh_form=True)
