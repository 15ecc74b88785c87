"""ReLU on numba-cpu (reference: llmref.ref.relu): the shared element loop of
llmref.accel.kernels.relu over the flat input. Checked by the reference's relu_args."""
import numba

from llmref.accel.kernels import relu as kernels
from llmref.accel.numba_cpu._activation import elementwise
from llmref.ref.relu import relu_args

_relu_elements = numba.njit(cache=True)(kernels.relu_elements)


def relu(x):
    return elementwise(_relu_elements, relu_args(x))
