"""SiLU on numba-cuda (reference: llmref.ref.silu): one thread per element runs the shared
loop of llmref.accel.kernels.silu. Checked by the reference's silu_args."""
from numba import cuda

from llmref.accel.kernels import silu as kernels
from llmref.accel.numba_cuda._activation import elementwise
from llmref.ref.silu import silu_args

_silu_elements = cuda.jit(device=True)(kernels.silu_elements)


@cuda.jit
def _silu(x, out):
    _silu_elements(x, cuda.grid(1), cuda.gridsize(1), out)


def silu(x):
    return elementwise(_silu, silu_args(x), "numba-cuda silu")
