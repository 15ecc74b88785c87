"""The exact GELU and its tanh approximation (specs/gelu.yaml, specs/gelu_tanh.yaml).

gelu_tanh computes in the precision of its input. The exact GELU is evaluated with math.erf
in float64 (NumPy has no erf) and the result cast to the input dtype. Empty inputs give
empty outputs.
"""
import math

import numpy as np

from llmref.ref._activation import elementwise_args, tanh_gelu

gelu_args = gelu_tanh_args = elementwise_args  # every backend checks through these

_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    """gelu(x) = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))   (exact GELU)."""
    x = gelu_args(x)
    wide = x.astype(np.float64)
    return (0.5 * wide * (1.0 + _erf(wide / math.sqrt(2.0)))).astype(x.dtype)


def gelu_tanh(x):
    """gelu_tanh(x) = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))."""
    return tanh_gelu(gelu_tanh_args(x))
