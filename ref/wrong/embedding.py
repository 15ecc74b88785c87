"""Wrong embedding variants seen in the wild; each must fail its audit."""
import math

import numpy as np


def embedding_unrounded_normalizer(ids, weight, normalizer="none"):
    """Multiplies by sqrt(D) in full precision instead of sqrt(D) rounded to the model dtype."""
    rows = weight[ids]
    return rows if normalizer == "none" else rows * weight.dtype.type(math.sqrt(weight.shape[1]))


def embedding_one_based_ids(ids, weight, normalizer="none"):
    """Looks up row id - 1 (1-based ids from a tokenizer that reserves 0), wrapping at 0."""
    from llmref.ref.embedding import embedding

    return embedding(np.mod(ids - 1, weight.shape[0]), weight, normalizer)
