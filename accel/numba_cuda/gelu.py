"""The exact and the tanh GELU on numba-cuda (reference: llmref.ref.gelu): one thread per
element runs the shared loops of llmref.accel.kernels.gelu. Checked by the reference's
gelu_args / gelu_tanh_args."""
from numba import cuda

from llmref.accel.kernels import gelu as kernels
from llmref.accel.numba_cuda._activation import elementwise
from llmref.ref.gelu import gelu_args, gelu_tanh_args

_gelu_elements = cuda.jit(device=True)(kernels.gelu_elements)
_gelu_tanh_elements = cuda.jit(device=True)(kernels.gelu_tanh_elements)


@cuda.jit
def _gelu(x, out):
    _gelu_elements(x, cuda.grid(1), cuda.gridsize(1), out)


@cuda.jit
def _gelu_tanh(x, out):
    _gelu_tanh_elements(x, cuda.grid(1), cuda.gridsize(1), out)


def gelu(x):
    return elementwise(_gelu, gelu_args(x), "numba-cuda gelu")


def gelu_tanh(x):
    return elementwise(_gelu_tanh, gelu_tanh_args(x), "numba-cuda gelu_tanh")
