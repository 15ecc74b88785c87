"""SiLU (specs/silu.yaml), in the precision of its input; an empty input gives an empty output."""
from llmref.ref._activation import elementwise_args, sigmoid

silu_args = elementwise_args  # every backend checks through this


def silu(x):
    """silu(x) = x * sigmoid(x)   (also called swish with beta = 1)."""
    x = silu_args(x)
    return x * sigmoid(x)
