"""Elementwise and gated activations as numba.cuda kernels: one thread per output element.

float16/bfloat16 inputs are widened to float32 on the host and the result rounded once back.
"""
import math

import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import widen
from llmref.backends import simulated
from llmref.ref.activations import (GELU_TANH_CUBIC, SQRT_2_OVER_PI, geglu_args, gelu_args,
                                    gelu_tanh_args, glu_args, relu_args, silu_args, swiglu_args)

THREADS = 32 if simulated() else 128
RELU, GELU, GELU_TANH, SILU = 0, 1, 2, 3


@cuda.jit(device=True)
def _activate(v, kind):
    if kind == RELU:
        return v if v > 0 else 0.0
    if kind == GELU:
        return 0.5 * v * (1 + math.erf(v / math.sqrt(2.0)))
    if kind == GELU_TANH:
        return 0.5 * v * (1 + math.tanh(SQRT_2_OVER_PI * (v + GELU_TANH_CUBIC * v * v * v)))
    return v / (1 + math.exp(-v))  # SILU


@cuda.jit
def _elementwise(x, out, kind):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = _activate(x[i], kind)


@cuda.jit
def _gated(gate, up, out, kind):
    """out = act(gate) * up."""
    i = cuda.grid(1)
    if i < gate.shape[0]:
        out[i] = _activate(gate[i], kind) * up[i]


@cuda.jit
def _glu(rows, out):
    """out[r, j] = rows[r, j] * sigmoid(rows[r, H + j]); one thread per (r, j)."""
    i = cuda.grid(1)
    half = out.shape[1]
    if i < out.shape[0] * half:
        r, j = i // half, i % half
        out[r, j] = rows[r, j] / (1 + math.exp(-rows[r, half + j]))


def _launch(kernel, inputs, out_shape, scalars=()):
    """kernel(*inputs, out, *scalars) over one thread per output element; out is guarded."""
    n = int(np.prod(out_shape))
    buf = guarded_host_buffer(n, inputs[0].dtype)
    d_buf = cuda.to_device(buf)
    d_out = interior(d_buf, n).reshape(out_shape)
    blocks = max(1, (n + THREADS - 1) // THREADS)
    kernel[blocks, THREADS](*[cuda.to_device(a) for a in inputs], d_out, *scalars)
    buf = d_buf.copy_to_host()
    check_guards(buf, n, "numba-cuda activation")
    return interior(buf, n).reshape(out_shape)


def _unary(x, kind):
    """x already validated."""
    flat = widen(x).reshape(-1)  # (n,)
    return _launch(_elementwise, [flat], flat.shape, (kind,)).reshape(x.shape).astype(x.dtype)


def _gated_call(gate, up, kind):
    """gate and up already validated: one shape, one dtype."""
    flat_gate, flat_up = widen(gate).reshape(-1), widen(up).reshape(-1)  # (n,) each
    out = _launch(_gated, [flat_gate, flat_up], flat_gate.shape, (kind,))
    return out.reshape(gate.shape).astype(gate.dtype)


def relu(x):
    return _unary(relu_args(x), RELU)


def gelu(x):
    return _unary(gelu_args(x), GELU)


def gelu_tanh(x):
    return _unary(gelu_tanh_args(x), GELU_TANH)


def silu(x):
    return _unary(silu_args(x), SILU)


def glu(x):
    x = glu_args(x)
    half = x.shape[-1] // 2
    rows = widen(x).reshape(math.prod(x.shape[:-1]), 2 * half)  # (rows, 2H)
    out = _launch(_glu, [rows], (rows.shape[0], half))
    return out.reshape(x.shape[:-1] + (half,)).astype(x.dtype)


def swiglu(gate, up):
    return _gated_call(*swiglu_args(gate, up), SILU)


def geglu(gate, up):
    return _gated_call(*geglu_args(gate, up), GELU_TANH)
