"""Wrong activation variants seen in the wild; each must fail its audit."""
import numpy as np

from llmref.ref.activations import gelu, gelu_tanh, sigmoid, silu


def gelu_tanh_where_exact_specified(x):
    """The tanh approximation where the exact erf GELU is specified (up to ~4e-4 off near |x|=3)."""
    return gelu_tanh(x)


def gelu_exact_where_tanh_specified(x):
    """The exact erf GELU where the tanh approximation is specified (Gemma's hidden_act='gelu' bug)."""
    return gelu(x)


def relu6(x):
    """ReLU6, min(max(x, 0), 6): a MobileNet activation picked by a wrong config key."""
    return np.minimum(np.maximum(x, 0), 6).astype(x.dtype)


def silu_as_quick_gelu(x):
    """x * sigmoid(1.702 x): quick_gelu substituted for silu (both are x * sigmoid(beta x))."""
    return x * sigmoid(x.dtype.type(1.702) * x)


def glu_halves_swapped(x):
    """b * sigmoid(a): the two halves of the fused projection taken in the wrong order."""
    half = x.shape[-1] // 2
    return x[..., half:] * sigmoid(x[..., :half])


def swiglu_activates_up(gate, up):
    """silu(up) * gate: the activation applied to the up projection instead of the gate."""
    return silu(up) * gate


def geglu_exact_gelu(gate, up):
    """gelu_erf(gate) * up: exact GELU in a Gemma GeGLU, which uses the tanh approximation."""
    return gelu(gate) * up


def geglu_activates_up(gate, up):
    """gelu_tanh(up) * gate: the activation applied to the up projection instead of the gate."""
    return gelu_tanh(up) * gate
