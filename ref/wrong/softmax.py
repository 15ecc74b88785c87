"""Wrong softmax / log-softmax variants seen in the wild; each must fail its audit."""
import numpy as np


def softmax_without_max_subtraction(x, axis=-1):
    """exp(x) / sum exp(x): overflows to inf/inf = NaN for logits above ~88 (float32)."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x)
        return e / e.sum(axis=axis, keepdims=True)


def softmax_over_first_axis(x, axis=-1):
    """Ignores `axis` and normalises over axis 0 (a transposed-layout bug)."""
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=0, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)


def log_of_softmax(x, axis=-1):
    """log(softmax(x)): tiny probabilities underflow to 0 and their log becomes -inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return np.log(e / e.sum(axis=axis, keepdims=True))
