"""Token embedding lookup and the LM head (specs/embedding.yaml, specs/lm_head.yaml)."""
import math

import numpy as np

from llmref.dtypes import round_to
from llmref.errors import InputError
from llmref.validate import float_array, int_array, same_size

NORMALIZER_DTYPES = ("float64", "float32", "float16", "bfloat16")


def embedding_normalizer(dim, dtype_name):
    """sqrt(dim) rounded to `dtype_name` (Gemma: the model's activation dtype), as float64.

    Gemma builds it as torch.tensor(hidden_size ** 0.5, dtype=activation dtype), so for
    hidden_size 3072 it is 55.5 in bfloat16 and 55.4375 in float16, not 55.4256...
    """
    if dtype_name not in NORMALIZER_DTYPES:
        raise InputError(f"normalizer: expected 'none' or one of {NORMALIZER_DTYPES}, "
                         f"got {dtype_name!r}")
    return float(round_to(math.sqrt(dim), dtype_name).astype(np.float64))


def embedding_args(ids, weight, normalizer):
    """Validated (ids, weight, c) of embedding; every backend checks through this."""
    weight = float_array("weight", weight, ndim=2)
    ids = int_array("ids", ids, low=0, high=weight.shape[0])
    if not isinstance(normalizer, str):
        raise InputError(f"normalizer: expected 'none' or a dtype name, got {normalizer!r}")
    scale = 1.0 if normalizer == "none" else embedding_normalizer(weight.shape[1], normalizer)
    return ids, weight, scale


def embedding(ids, weight, normalizer="none"):
    """y[..., :] = weight[ids[...], :] * c,   c = 1 or sqrt(D) rounded to `normalizer`.

    ids: integers in [0, V); weight: (V, D). Returns shape ids.shape + (D,).
    """
    ids, weight, scale = embedding_args(ids, weight, normalizer)
    rows = weight[ids]  # (*ids.shape, D)
    if normalizer == "none":
        return rows
    return rows * weight.dtype.type(scale)


def lm_head(h, embedding, output_weight, tied=False):
    """logits = h @ W^T,   W = embedding if tied else output_weight,   both (V, D).

    h: (..., D). Both matrices are (V, D): nn.Embedding stores (num_embeddings, dim) and
    nn.Linear(D, V) stores (out, in) = (V, D), so a tied model hands its embedding matrix in
    unchanged. The input-embedding normaliser (Gemma) is never applied here.
    """
    h, w = lm_head_args(h, embedding, output_weight, tied)
    return h @ w.T  # (..., D) @ (D, V) -> (..., V)


def lm_head_args(h, embedding, output_weight, tied):
    """Validated (h, W) of lm_head, W the matrix `tied` selects; every backend checks through this."""
    h = float_array("h", h, min_ndim=1)
    matrices = {}
    for name, value in (("embedding", embedding), ("output_weight", output_weight)):
        matrices[name] = float_array(name, value, ndim=2)
        same_size(name, matrices[name].shape[1], h.shape[-1], "the last axis of h")
        if matrices[name].dtype != h.dtype:
            raise InputError(f"{name}: has dtype {matrices[name].dtype} but h has {h.dtype}")
    if not isinstance(tied, (bool, np.bool_)):
        raise InputError(f"tied: expected a bool, got {tied!r}")
    return h, matrices["embedding"] if tied else matrices["output_weight"]
