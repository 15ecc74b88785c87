"""The exact and the tanh GELU on numba-cpu (reference: llmref.ref.gelu): the exact one is
the shared element loop of llmref.accel.kernels.gelu over the flat input; the tanh one is
x * sigmoid(2u), vectorised (llmref.accel.numba_cpu._activation). Checked by the
reference's gelu_args / gelu_tanh_args."""
import numba

from llmref.accel.kernels import gelu as kernels
from llmref.accel.numba_cpu import _activation
from llmref.ref.gelu import gelu_args, gelu_tanh_args

_gelu_elements = numba.njit(cache=True)(kernels.gelu_elements)


def gelu(x):
    return _activation.elementwise(_gelu_elements, gelu_args(x))


def gelu_tanh(x):
    return _activation.gelu_tanh(gelu_tanh_args(x))
