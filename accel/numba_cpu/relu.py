"""ReLU on numba-cpu (reference: llmref.ref.relu): the shared element loop of
llmref.accel.kernels.relu over contiguous chunks of the flat input, chunks spread across
threads (prange; llmref.accel.numba_cpu._threads); each chunk is its own (first = 0,
step = 1) walk, a unit-stride loop LLVM vectorises. Checked by the reference's relu_args."""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import relu as kernels
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.relu import relu_args

TASK = 16384  # elements per parallel task
_relu_elements = numba.njit(cache=True)(kernels.relu_elements)


@threaded_loop()
def _relu_chunks(x, out):
    """out[lo:hi] = relu(x[lo:hi]) for every TASK-element chunk, in parallel."""
    n = x.shape[0]
    for task in numba.prange((n + TASK - 1) // TASK):
        lo, hi = task * TASK, min(n, (task + 1) * TASK)
        _relu_elements(x[lo:hi], 0, 1, out[lo:hi])


def relu(x):
    x = relu_args(x)
    flat = widen(x).reshape(-1)  # (n,)
    out = np.empty_like(flat)
    _relu_chunks(flat.size, flat, out)
    return out.reshape(x.shape).astype(x.dtype, copy=False)
