"""Wrong SiLU variants seen in the wild; each must fail its audit."""
from llmref.ref._activation import sigmoid


def silu_as_quick_gelu(x):
    """x * sigmoid(1.702 x): quick_gelu substituted for silu (both are x * sigmoid(beta x))."""
    return x * sigmoid(x.dtype.type(1.702) * x)
