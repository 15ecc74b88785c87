"""ReLU (specs/relu.yaml), in the precision of its input; an empty input gives an empty output."""
import numpy as np

from llmref.ref._activation import elementwise_args

relu_args = elementwise_args  # every backend checks through this


def relu(x):
    """relu(x) = max(x, 0); relu(-0.0) = 0.0."""
    x = relu_args(x)
    return np.maximum(x, 0).astype(x.dtype)
