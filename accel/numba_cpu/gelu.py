"""The exact and the tanh GELU on numba-cpu (reference: llmref.ref.gelu): the shared element
loops of llmref.accel.kernels.gelu over the flat input. Checked by the reference's
gelu_args / gelu_tanh_args."""
import numba

from llmref.accel.kernels import gelu as kernels
from llmref.accel.numba_cpu._activation import elementwise
from llmref.ref.gelu import gelu_args, gelu_tanh_args

_gelu_elements = numba.njit(cache=True)(kernels.gelu_elements)
_gelu_tanh_elements = numba.njit(cache=True)(kernels.gelu_tanh_elements)


def gelu(x):
    return elementwise(_gelu_elements, gelu_args(x))


def gelu_tanh(x):
    return elementwise(_gelu_tanh_elements, gelu_tanh_args(x))
