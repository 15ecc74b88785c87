"""GLU, SwiGLU and GeGLU on numba-cuda (reference: llmref.ref.glu): one thread per output
element runs the shared loops of llmref.accel.kernels.glu; inputs widened to the compute
dtype (float32 for float16/bfloat16) on the host, the result rounded once. Checked by the
reference's glu_args / swiglu_args / geglu_args."""
import math

from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import glu as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.glu import geglu_args, glu_args, swiglu_args

_glu_rows = cuda.jit(device=True)(kernels.glu_rows)
_swiglu_elements = cuda.jit(device=True)(kernels.swiglu_elements)
_geglu_elements = cuda.jit(device=True)(kernels.geglu_elements)


@cuda.jit
def _glu(rows, out):
    _glu_rows(rows, cuda.grid(1), cuda.gridsize(1), out)


@cuda.jit
def _swiglu(gate, up, out):
    _swiglu_elements(gate, up, cuda.grid(1), cuda.gridsize(1), out)


@cuda.jit
def _geglu(gate, up, out):
    _geglu_elements(gate, up, cuda.grid(1), cuda.gridsize(1), out)


def _gated(kernel, gate, up, what):
    """kernel(gate, up, out) over checked gate and up (one shape, one dtype), flat."""
    flat_gate, flat_up = widen(gate).reshape(-1), widen(up).reshape(-1)  # (n,) each
    out = Guarded(flat_gate.shape, flat_gate.dtype, what)
    kernel[grid(flat_gate.size), THREADS](cuda.to_device(flat_gate), cuda.to_device(flat_up), out.device)
    return out.result().reshape(gate.shape).astype(gate.dtype)


def glu(x):
    x = glu_args(x)
    half = x.shape[-1] // 2
    rows = widen(x).reshape(math.prod(x.shape[:-1]), 2 * half)  # (rows, 2H)
    out = Guarded((rows.shape[0], half), rows.dtype, "numba-cuda glu")
    _glu[grid(rows.shape[0] * half), THREADS](cuda.to_device(rows), out.device)
    return out.result().reshape(x.shape[:-1] + (half,)).astype(x.dtype)


def swiglu(gate, up):
    return _gated(_swiglu, *swiglu_args(gate, up), "numba-cuda swiglu")


def geglu(gate, up):
    return _gated(_geglu, *geglu_args(gate, up), "numba-cuda geglu")
