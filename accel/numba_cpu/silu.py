"""SiLU on numba-cpu (reference: llmref.ref.silu): the shared element loop of
llmref.accel.kernels.silu over the flat input. Checked by the reference's silu_args."""
import numba

from llmref.accel.kernels import silu as kernels
from llmref.accel.numba_cpu._activation import elementwise
from llmref.ref.silu import silu_args

_silu_elements = numba.njit(cache=True)(kernels.silu_elements)


def silu(x):
    return elementwise(_silu_elements, silu_args(x))
