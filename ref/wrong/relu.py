"""Wrong ReLU variants seen in the wild; each must fail its audit."""
import numpy as np


def relu6(x):
    """ReLU6, min(max(x, 0), 6): a MobileNet activation picked by a wrong config key."""
    return np.minimum(np.maximum(x, 0), 6).astype(x.dtype)
