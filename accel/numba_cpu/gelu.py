"""The exact and the tanh GELU on numba-cpu (reference: llmref.ref.gelu). The exact one is
the shared element loop of llmref.accel.kernels.gelu (libm's erf, one element at a time) over
contiguous chunks of the flat input, the chunks spread across threads (prange;
llmref.accel.numba_cpu._threads), as relu's are. The tanh one is x * sigmoid(2u) on the
float32 vectorised exp for float32/float16/bfloat16 inputs and the shared loop at float64
(both in llmref.accel.numba_cpu._activation). Checked by the reference's gelu_args /
gelu_tanh_args."""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import gelu as kernels
from llmref.accel.numba_cpu._activation import elementwise, x_times_sigmoid
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.gelu import gelu_args, gelu_tanh_args

TASK = 4096  # elements per parallel task (an erf costs about 10 ns: 40 us a task)
_gelu_elements = numba.njit(cache=True)(kernels.gelu_elements)
_gelu_tanh_elements = numba.njit(cache=True)(kernels.gelu_tanh_elements)


@threaded_loop()
def _gelu_chunks(x, out):
    """out[lo:hi] = gelu(x[lo:hi]) for every TASK-element chunk, in parallel."""
    n = x.shape[0]
    for task in numba.prange((n + TASK - 1) // TASK):
        lo, hi = task * TASK, min(n, (task + 1) * TASK)
        _gelu_elements(x[lo:hi], 0, 1, out[lo:hi])


def gelu(x):
    x = gelu_args(x)
    flat = widen(x).reshape(-1)  # (n,)
    out = np.empty_like(flat)
    _gelu_chunks(flat.size, flat, out)
    return out.reshape(x.shape).astype(x.dtype, copy=False)


def gelu_tanh(x):
    x = gelu_tanh_args(x)
    if x.dtype == np.float64:
        return elementwise(_gelu_tanh_elements, x)
    return x_times_sigmoid(x, tanh_form=True)
