"""Wrong merge_attention_states variants seen in the wild; each must fail its audit."""
import numpy as np


def merge_without_max(out_a, lse_a, out_b, lse_b):
    """Weights exp(lse_a), exp(lse_b) without subtracting the maximum: overflow to inf/inf."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        wa, wb = np.exp(lse_a), np.exp(lse_b)
        total = wa + wb
        out = (wa[..., None] * out_a + wb[..., None] * out_b) / total[..., None]
        return out, np.log(total)
