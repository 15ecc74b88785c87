"""Wrong gated-activation variants seen in the wild; each must fail its audit."""
from llmref.ref._activation import sigmoid
from llmref.ref.gelu import gelu, gelu_tanh
from llmref.ref.silu import silu


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
