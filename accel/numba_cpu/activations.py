"""Elementwise and gated activations as numba.njit loops (reference: llmref.ref.activations).

Inputs are flattened to 1-D in the compute dtype (float64, or float32 for every narrower
float); half-precision results are rounded once back to the input dtype.
"""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.activations import (GELU_TANH_CUBIC, SQRT_2_OVER_PI, geglu_args, gelu_args,
                                    gelu_tanh_args, glu_args, relu_args, silu_args, swiglu_args)

RELU, GELU, GELU_TANH, SILU = 0, 1, 2, 3


@numba.njit(cache=True)
def _activate(v, kind):
    """One activation of a scalar, in the scalar's precision."""
    if kind == RELU:
        return v if v > 0 else 0.0  # +0.0 for negatives and for -0.0
    if kind == GELU:
        return 0.5 * v * (1 + math.erf(v / math.sqrt(2.0)))
    if kind == GELU_TANH:
        return 0.5 * v * (1 + math.tanh(SQRT_2_OVER_PI * (v + GELU_TANH_CUBIC * v * v * v)))
    return v / (1 + math.exp(-v))  # SILU; exp overflow to inf gives -0.0


@numba.njit(cache=True)
def _elementwise(x, out, kind):
    for i in range(x.shape[0]):
        out[i] = _activate(x[i], kind)


@numba.njit(cache=True)
def _gated(gate, up, out, kind):
    """out = act(gate) * up, elementwise."""
    for i in range(gate.shape[0]):
        out[i] = _activate(gate[i], kind) * up[i]


@numba.njit(cache=True)
def _glu_rows(rows, out):
    """out[r, j] = rows[r, j] * sigmoid(rows[r, H + j])."""
    half = out.shape[1]
    for r in range(rows.shape[0]):
        for j in range(half):
            out[r, j] = rows[r, j] / (1 + math.exp(-rows[r, half + j]))


def _unary(x, kind):
    """x already validated."""
    flat = widen(x).reshape(-1)  # (n,)
    out = np.empty_like(flat)
    _elementwise(flat, out, kind)
    return out.reshape(x.shape).astype(x.dtype)


def _gated_call(gate, up, kind):
    """gate and up already validated: one shape, one dtype."""
    flat_gate, flat_up = widen(gate).reshape(-1), widen(up).reshape(-1)  # (n,) each
    out = np.empty_like(flat_gate)
    _gated(flat_gate, flat_up, out, kind)
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
    """a * sigmoid(b) with [a | b] = x split on the last axis."""
    x = glu_args(x)
    half = x.shape[-1] // 2
    rows = widen(x).reshape(math.prod(x.shape[:-1]), 2 * half)  # (rows, 2H)
    out = np.empty((rows.shape[0], half), rows.dtype)
    _glu_rows(rows, out)
    return out.reshape(x.shape[:-1] + (half,)).astype(x.dtype)


def swiglu(gate, up):
    return _gated_call(*swiglu_args(gate, up), SILU)


def geglu(gate, up):
    return _gated_call(*geglu_args(gate, up), GELU_TANH)
