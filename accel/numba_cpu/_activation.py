"""The host side and the loops that the numba-cpu activation families (relu, gelu, silu, glu)
share. Inputs are widened to the compute dtype (float32 for float16/bfloat16) and the result
is rounded once to the input dtype. Two kinds of loop:

* `elementwise` / `elementwise_gated`: a shared element loop of llmref.accel.kernels (the
  exact GELU, and the sigmoid-gated activations at float64) over every element, serially.
* `times_sigmoid`: the sigmoid-gated activations at float32, over contiguous chunks spread
  across threads (prange; llmref.accel.numba_cpu._threads), each of the form

      y = a * sigmoid(s) [* up],   sigmoid(s) = 1 / (1 + e) for s >= 0, e / (1 + e) below,
                                   e = exp(-|s|) <= 1

      silu:  a = s = x               swiglu: a = s = gate, times up
      glu:   a, s = the two halves   gelu_tanh: a = x, s = 2u(x)    geglu: gelu_tanh(gate) * up
      u(v) = sqrt(2/pi) (v + 0.044715 v^3),  so 0.5 v (1 + tanh(u)) = v sigmoid(2u)

  e comes from the float32 vectorised exp (llmref.accel.numba_cpu._exp.exp_nonpositive32),
  CHUNK elements at a time: nothing overflows, and 1 + tanh(u) never cancels for negative u.
  A libm expf call per element (numba's math.exp) runs one lane where NumPy's float32 exp runs
  eight, which made these loops 2-5x slower than the NumPy reference. 2u and s share their
  sign, so the branch is taken on s. Error: exp <= 1.7 ulps, then 1 + e, the division and the
  products one rounding each (within the specs' 4 ulps).
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.numba_cpu._exp import CHUNK, exp_nonpositive32, scratch32
from llmref.accel.numba_cpu._threads import prange_body, threaded_loop
from llmref.ref._activation import GELU_TANH_CUBIC, SQRT_2_OVER_PI

TASK = 16 * CHUNK  # elements per parallel task
TWICE_SQRT_2_OVER_PI = np.float32(2 * SQRT_2_OVER_PI)
CUBIC = np.float32(GELU_TANH_CUBIC)


def elementwise(elements, x):
    """elements(flat, 0, 1, out), a compiled loop of llmref.accel.kernels, over checked x
    flattened in its compute dtype; out rounded once to x's dtype, in x's shape."""
    flat = widen(x).reshape(-1)  # (n,)
    out = np.empty_like(flat)
    elements(flat, 0, 1, out)
    return out.reshape(x.shape).astype(x.dtype, copy=False)


def elementwise_gated(elements, gate, up):
    """elements(gate, up, 0, 1, out) over checked gate and up of one shape, flattened."""
    flat_gate, flat_up = widen(gate).reshape(-1), widen(up).reshape(-1)  # (n,) each
    out = np.empty_like(flat_gate)
    elements(flat_gate, flat_up, 0, 1, out)
    return out.reshape(gate.shape).astype(gate.dtype, copy=False)


@prange_body(fastmath={"contract"}, error_model="numpy")  # fused multiply-adds; 1 + e >= 1
def _times_sigmoid_task(a, s, s_first, up, tanh_form, gated, out, r, start, stop):
    """_times_sigmoid's columns start <= j < stop of row r. A function of its own, whose
    arrays are noalias (a = s, and up = out when not gated, are only read or never read, as
    noalias allows), so that its loops vectorise in the serial build too: with out possibly
    overlapping four inputs, LLVM left the division loop scalar. numba's default error model
    tests every float division for a zero divisor (to raise ZeroDivisionError), which keeps a
    loop scalar too; 1 + e is never zero, so NumPy's model (no test) changes nothing else."""
    one = np.float32(1)
    t, e, half, rest = scratch32()
    for first in range(start, stop, CHUNK):
        w = min(CHUNK, stop - first)
        # (w,) views of the block: an index from 0 is never negative, so the loads are
        # contiguous vectors (s[r, s_first + first + i] was gathered, lane by lane)
        sb, ab, ub, ob = s[r, s_first + first:][:w], a[r, first:], up[r, first:], out[r, first:]
        for i in range(w):
            v = sb[i]
            z = TWICE_SQRT_2_OVER_PI * (v + CUBIC * v * v * v) if tanh_form else v
            t[i] = -abs(z)
        exp_nonpositive32(t, e, half, rest, w)  # e = exp(-|z|)
        for i in range(w):
            y = ab[i] * ((one if sb[i] >= 0 else e[i]) / (one + e[i]))
            ob[i] = y * ub[i] if gated else y


@threaded_loop()
def _times_sigmoid(a, s, s_first, up, tanh_form, gated, out):
    """out[r, j] = a[r, j] * sigmoid(z) (* up[r, j] where gated), z = 2u(s[r, s_first + j])
    in tanh form, else s[r, s_first + j], for j < N. float32 C-contiguous arrays of R rows
    (a and s at least N columns, s_first + N for s; up and out (R, N))."""
    rows, n = out.shape
    per_row = (n + TASK - 1) // TASK
    for task in numba.prange(rows * per_row):
        r, start = task // per_row, (task % per_row) * TASK
        _times_sigmoid_task(a, s, s_first, up, tanh_form, gated, out, r, start, min(n, start + TASK))


def times_sigmoid(a, s, up=None, tanh_form=False, s_first=0):
    """a * sigmoid(s or 2u(s)) (* up): (R, N) float32, N = a's columns less s_first, column j
    from a[:, j] and s[:, s_first + j] (glu: a = s = the rows (R, 2H), s_first = H). Whole
    C-contiguous arrays, never column views: one compilation serves every caller."""
    n = a.shape[1] - s_first
    out = np.empty((a.shape[0], n), np.float32)
    _times_sigmoid(out.size, a, s, s_first, out if up is None else up, tanh_form, up is not None, out)
    return out


def x_times_sigmoid(x, up=None, tanh_form=False):
    """x * sigmoid(x or 2u(x)) (* up) over checked float32/float16/bfloat16 x (and up, of x's
    shape), flattened and computed in float32; in x's shape and dtype."""
    a = widen(x).reshape(1, -1)  # (1, n)
    y = times_sigmoid(a, a, None if up is None else widen(up).reshape(1, -1), tanh_form)
    return y.reshape(x.shape).astype(x.dtype, copy=False)
