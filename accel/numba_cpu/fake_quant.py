"""QAT fake-quantization as a numba.njit loop (reference: llmref.ref.fake_quant); the
argument checks are the reference's (fake_quant_args). numba-cpu is its only backend, so the
loop holds its math."""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.fake_quant import fake_quant_args


@numba.njit(cache=True)
def _fake_quant(x, grad_y, scale, zero_point, qmin, qmax, y, grad_x):
    """code = round_half_even(x / scale) + zero_point; y clamps it; grad_x passes grad_y
    where the code lies inside [qmin, qmax] (the straight-through estimator)."""
    for i in range(x.size):
        c = np.rint(x[i] / scale) + zero_point
        inside = qmin <= c <= qmax
        y[i] = (min(max(c, qmin), qmax) - zero_point) * scale
        grad_x[i] = grad_y[i] if inside else 0.0


def fake_quant(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    x, grad_y = fake_quant_args(x, grad_y, scale, zero_point, quant_min, quant_max)
    xs, gs = widen(x).reshape(-1), widen(grad_y).reshape(-1)
    y, grad_x = np.empty_like(xs), np.empty_like(gs)
    _fake_quant(xs, gs, xs.dtype.type(scale), zero_point, quant_min, quant_max, y, grad_x)
    return y.reshape(x.shape).astype(x.dtype), grad_x.reshape(x.shape).astype(x.dtype)
