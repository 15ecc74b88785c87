"""Wrong LM-head variants seen in the wild; each must fail its audit."""
import math


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
