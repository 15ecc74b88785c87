"""Token embedding lookup (specs/embedding.yaml); the LM head is llmref.ref.lm_head."""
import math

import numpy as np

from llmref.dtypes import round_to
from llmref.errors import InputError
from llmref.validate import float_array, int_array

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
    """Validated (ids, weight, c) of embedding; every backend checks through this, and then
    runs check_read_rows on the rows it reads: weight's values are not looked at here."""
    weight = float_array("weight", weight, ndim=2, allow_nan=True, allow_inf=True)
    ids = int_array("ids", ids, low=0, high=weight.shape[0])
    if not isinstance(normalizer, str):
        raise InputError(f"normalizer: expected 'none' or a dtype name, got {normalizer!r}")
    scale = 1.0 if normalizer == "none" else embedding_normalizer(weight.shape[1], normalizer)
    return ids, weight, scale


def check_read_rows(rows):
    """No NaN or inf in rows = weight[ids] (before any scaling), the only rows an embedding
    reads; the rest of the table is never looked at (a vocabulary is far larger than a
    batch's ids: checking every row made the bench shape's lookup 69-76 ms, against 20-23 ms
    checking the rows read)."""
    float_array("weight", rows)


def embedding(ids, weight, normalizer="none"):
    """y[..., :] = weight[ids[...], :] * c,   c = 1 or sqrt(D) rounded to `normalizer`.

    ids: integers in [0, V); weight: (V, D). Returns shape ids.shape + (D,).
    """
    ids, weight, scale = embedding_args(ids, weight, normalizer)
    rows = weight[ids]  # (*ids.shape, D)
    check_read_rows(rows)
    if normalizer == "none":
        return rows
    return rows * weight.dtype.type(scale)
