"""ReLU on numba-cuda (reference: llmref.ref.relu): one thread per element runs the shared
loop of llmref.accel.kernels.relu. Checked by the reference's relu_args."""
from numba import cuda

from llmref.accel.kernels import relu as kernels
from llmref.accel.numba_cuda._activation import elementwise
from llmref.ref.relu import relu_args

_relu_elements = cuda.jit(device=True)(kernels.relu_elements)


@cuda.jit
def _relu(x, out):
    _relu_elements(x, cuda.grid(1), cuda.gridsize(1), out)


def relu(x):
    return elementwise(_relu, relu_args(x), "numba-cuda relu")
