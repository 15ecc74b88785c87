"""Elementwise activations and the gated (GLU-family) activations of transformer MLPs
(specs/relu.yaml, gelu.yaml, gelu_tanh.yaml, silu.yaml, glu.yaml, swiglu.yaml, geglu.yaml).

Each function computes in the precision of its input and returns that dtype, except the
exact GELU: NumPy has no erf, so it is evaluated with math.erf in float64 and the result is
cast to the input dtype. Empty inputs give empty outputs. Every entry point checks its
arguments through its `<name>_args` function, which every backend calls too.
"""
import math

import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array, same_size

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # 0.7978845608028654
GELU_TANH_CUBIC = 0.044715

_erf = np.vectorize(math.erf, otypes=[np.float64])


def elementwise_args(x):
    """Validated x of an elementwise activation: a finite float array of any shape."""
    return float_array("x", x)


relu_args = gelu_args = gelu_tanh_args = silu_args = elementwise_args


def glu_args(x):
    """Validated x of glu: rank >= 1 and an even last axis, which glu splits into halves."""
    x = float_array("x", x, min_ndim=1)
    if x.shape[-1] % 2:
        raise InputError(f"x: last axis has odd size {x.shape[-1]}; glu splits it into two halves")
    return x


def gated_args(gate, up):
    """Validated (gate, up) of a gated activation: float arrays of one shape and dtype."""
    gate = float_array("gate", gate, min_ndim=1)
    up = float_array("up", up, min_ndim=1)
    same_size("up", up.shape, gate.shape, "the shape of gate")
    if up.dtype != gate.dtype:
        raise InputError(f"up: has dtype {up.dtype} but gate has {gate.dtype}")
    return gate, up


swiglu_args = geglu_args = gated_args


def relu(x):
    """relu(x) = max(x, 0); relu(-0.0) = 0.0."""
    x = relu_args(x)
    return np.maximum(x, 0).astype(x.dtype)


def gelu(x):
    """gelu(x) = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))   (exact GELU)."""
    x = gelu_args(x)
    wide = x.astype(np.float64)
    return (0.5 * wide * (1.0 + _erf(wide / math.sqrt(2.0)))).astype(x.dtype)


def gelu_tanh(x):
    """gelu_tanh(x) = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))."""
    x = gelu_tanh_args(x)
    return _gelu_tanh(x)


def _gelu_tanh(x):
    inner = x.dtype.type(SQRT_2_OVER_PI) * (x + x.dtype.type(GELU_TANH_CUBIC) * x * x * x)
    return x.dtype.type(0.5) * x * (1 + np.tanh(inner))


def sigmoid(x):
    """sigmoid(x) = 1 / (1 + exp(-x)); exp overflows to inf for very negative x, giving 0."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def silu(x):
    """silu(x) = x * sigmoid(x)   (also called swish with beta = 1)."""
    x = silu_args(x)
    return x * sigmoid(x)


def glu(x):
    """glu(x) = a * sigmoid(b),  [a | b] = x split into halves along the last axis."""
    x = glu_args(x)
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]  # (..., H) each
    return a * sigmoid(b)


def swiglu(gate, up):
    """swiglu(gate, up) = silu(gate) * up   (the activation is applied to the gate only)."""
    gate, up = swiglu_args(gate, up)
    return gate * sigmoid(gate) * up


def geglu(gate, up):
    """geglu(gate, up) = gelu_tanh(gate) * up   (Gemma's GeGLU uses the tanh GELU)."""
    gate, up = geglu_args(gate, up)
    return _gelu_tanh(gate) * up
