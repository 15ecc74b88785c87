"""QAT fake-quantization as a numba.njit loop (reference: llmref.ref.fake_quant); the
argument checks are the reference's (fake_quant_args). numba-cpu is its only backend, so the
loop holds its math. The flat input is cut into chunks spread across threads (prange;
llmref.accel.numba_cpu._threads), each a unit-stride loop that LLVM vectorises: with numba's
default error model every x / scale tested its divisor for zero (to raise ZeroDivisionError),
which kept the loop scalar; numpy's model divides as NumPy does (a scale that rounds to 0 at
x's dtype gives NumPy's inf, as the reference's division does)."""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.numba_cpu._threads import prange_body, threaded_loop
from llmref.ref.fake_quant import fake_quant_args

TASK = 16384  # elements per parallel task


@prange_body(error_model="numpy")
def _fake_quant_chunk(x, grad_y, scale, zero_point, qmin, qmax, y, grad_x):
    """code = round_half_even(x / scale) + zero_point; y clamps it; grad_x passes grad_y
    where the code lies inside [qmin, qmax] (the straight-through estimator)."""
    for i in range(x.shape[0]):
        c = np.rint(x[i] / scale) + zero_point
        inside = qmin <= c <= qmax
        y[i] = (min(max(c, qmin), qmax) - zero_point) * scale
        grad_x[i] = grad_y[i] if inside else 0.0


@threaded_loop(error_model="numpy")
def _fake_quant(x, grad_y, scale, zero_point, qmin, qmax, y, grad_x):
    """_fake_quant_chunk over every TASK-element chunk, in parallel."""
    n = x.shape[0]
    for task in numba.prange((n + TASK - 1) // TASK):
        lo, hi = task * TASK, min(n, (task + 1) * TASK)
        _fake_quant_chunk(x[lo:hi], grad_y[lo:hi], scale, zero_point, qmin, qmax, y[lo:hi], grad_x[lo:hi])


def fake_quant(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    x, grad_y = fake_quant_args(x, grad_y, scale, zero_point, quant_min, quant_max)
    xs, gs = widen(x).reshape(-1), widen(grad_y).reshape(-1)
    y, grad_x = np.empty_like(xs), np.empty_like(gs)
    _fake_quant(xs.size, xs, gs, xs.dtype.type(scale), zero_point, quant_min, quant_max, y, grad_x)
    return y.reshape(x.shape).astype(x.dtype, copy=False), grad_x.reshape(x.shape).astype(x.dtype, copy=False)
