"""Wrong embedding / LM-head variants seen in the wild; each must fail its audit."""
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


def lm_head_weight_read_transposed(h, embedding, output_weight, tied=False):
    """Reads the (V, D) matrix's memory as (D, V) and computes h @ W: same shape, wrong values."""
    w = embedding if tied else output_weight
    return h @ w.reshape(w.shape[1], w.shape[0])


def lm_head_ignores_tied(h, embedding, output_weight, tied=False):
    """Always uses the separate output weight, even when the head is tied to the embedding."""
    return h @ output_weight.T


def lm_head_tied_scaled(h, embedding, output_weight, tied=False):
    """Applies Gemma's input-embedding normaliser sqrt(D) to the tied output head as well."""
    w = embedding if tied else output_weight
    logits = h @ w.T
    return logits * h.dtype.type(math.sqrt(h.shape[-1])) if tied else logits
