"""The gated activations of transformer MLPs (specs/glu.yaml, specs/swiglu.yaml,
specs/geglu.yaml), in the precision of their inputs; empty inputs give empty outputs. Every
entry point checks its arguments through its `<name>_args` function, which every backend
calls too.
"""
from llmref.errors import InputError
from llmref.ref._activation import sigmoid, tanh_gelu
from llmref.validate import float_array, same_size


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
    return tanh_gelu(gate) * up
