"""Wrong GELU variants seen in the wild; each must fail its audit."""
from llmref.ref.gelu import gelu, gelu_tanh


def gelu_tanh_where_exact_specified(x):
    """The tanh approximation where the exact erf GELU is specified (up to ~4e-4 off near |x|=3)."""
    return gelu_tanh(x)


def gelu_exact_where_tanh_specified(x):
    """The exact erf GELU where the tanh approximation is specified (Gemma's hidden_act='gelu' bug)."""
    return gelu(x)
