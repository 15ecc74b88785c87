"""SiLU on numba-cpu (reference: llmref.ref.silu): x * sigmoid(x) on the float32 vectorised
exp for float32/float16/bfloat16 inputs, the shared element loop of llmref.accel.kernels.silu
at float64 (both in llmref.accel.numba_cpu._activation). Checked by the reference's
silu_args."""
import numba
import numpy as np

from llmref.accel.kernels import silu as kernels
from llmref.accel.numba_cpu._activation import elementwise, x_times_sigmoid
from llmref.ref.silu import silu_args

_silu_elements = numba.njit(cache=True)(kernels.silu_elements)


def silu(x):
    x = silu_args(x)
    return elementwise(_silu_elements, x) if x.dtype == np.float64 else x_times_sigmoid(x)
