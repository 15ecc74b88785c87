"""What the activation families (relu, gelu, silu, glu) share: the argument check of an
elementwise activation, the logistic sigmoid and the tanh-approximate GELU formula.

Each computes in the precision of its input and returns that dtype.
"""
import math

import numpy as np

from llmref.validate import float_array

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # 0.7978845608028654
GELU_TANH_CUBIC = 0.044715


def elementwise_args(x):
    """Validated x of an elementwise activation: a finite float array of any shape."""
    return float_array("x", x)


def sigmoid(x):
    """sigmoid(x) = 1 / (1 + exp(-x)); exp overflows to inf for very negative x, giving 0."""
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def tanh_gelu(x):
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))) of a checked float array."""
    inner = x.dtype.type(SQRT_2_OVER_PI) * (x + x.dtype.type(GELU_TANH_CUBIC) * x * x * x)
    return x.dtype.type(0.5) * x * (1 + np.tanh(inner))
