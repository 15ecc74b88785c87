"""Merging two partial attention states over disjoint key sets from their outputs and
log-sum-exps (specs/merge_attention_states.yaml): how split-K and cascade attention combine.
"""
import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array


def merge_attention_states(out_a, lse_a, out_b, lse_b):
    """Combine attention over two disjoint key sets from their normalised outputs and
    log-sum-exps:

      lse = log(e^lse_a + e^lse_b) = M + log(e^(lse_a - M) + e^(lse_b - M)),  M = max(lse_a, lse_b)
      out = e^(lse_a - lse) out_a + e^(lse_b - lse) out_b

    Associative and commutative; a part with lse -inf (no keys) has weight 0, and two empty
    parts merge to out 0, lse -inf."""
    out_a, lse_a, out_b, lse_b = merge_attention_states_args(out_a, lse_a, out_b, lse_b)
    big = np.maximum(lse_a, lse_b)
    safe = np.where(np.isfinite(big), big, 0)
    wa, wb = np.exp(lse_a - safe), np.exp(lse_b - safe)  # (...,) both 0 when both empty
    total = wa + wb
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = np.where(total > 0, safe + np.log(total), -np.inf)
        out = np.where(total[..., None] > 0,
                       (wa[..., None] * out_a + wb[..., None] * out_b) / total[..., None], 0)
    return out.astype(out_a.dtype), lse.astype(out_a.dtype)


def merge_attention_states_args(out_a, lse_a, out_b, lse_b):
    """Validated (out_a, lse_a, out_b, lse_b): outputs (..., Dv) of one shape, Dv >= 1 (any
    number of rows, 0 included), lse (...) each (-inf allowed: no keys); every backend checks
    through this."""
    out_a = float_array("out_a", out_a, min_ndim=1)
    out_b = float_array("out_b", out_b, min_ndim=1)
    if out_a.shape[-1] == 0:
        raise InputError(f"out_a: value width must be >= 1, got shape {out_a.shape}")
    lse_a = float_array("lse_a", lse_a, allow_neg_inf=True)
    lse_b = float_array("lse_b", lse_b, allow_neg_inf=True)
    if out_b.shape != out_a.shape:
        raise InputError(f"out_b: shape {out_b.shape} differs from out_a's {out_a.shape}")
    for name, lse in (("lse_a", lse_a), ("lse_b", lse_b)):
        if lse.shape != out_a.shape[:-1]:
            raise InputError(f"{name}: expected shape {out_a.shape[:-1]}, got {lse.shape}")
    return out_a, lse_a, out_b, lse_b
