"""Embedding lookup and LM head as numba.njit loops (reference: llmref.ref.embedding)."""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.embedding import embedding_args, lm_head_args


@numba.njit(cache=True)
def _gather_rows(ids, weight, scale, out):
    """out[i] = weight[ids[i]] * scale."""
    for i in range(ids.shape[0]):
        for d in range(weight.shape[1]):
            out[i, d] = weight[ids[i], d] * scale


@numba.njit(cache=True)
def _logits(h, w, out):
    """out[t, v] = sum_d h[t, d] * w[v, d], accumulated in the compute dtype."""
    for t in range(h.shape[0]):
        for v in range(w.shape[0]):
            acc = 0.0
            for d in range(h.shape[1]):
                acc += h[t, d] * w[v, d]
            out[t, v] = acc


def embedding(ids, weight, normalizer="none"):
    ids, weight, scale = embedding_args(ids, weight, normalizer)
    table = widen(weight)
    flat_ids = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)  # (n,)
    out = np.empty((flat_ids.shape[0], table.shape[1]), table.dtype)
    _gather_rows(flat_ids, table, table.dtype.type(scale), out)
    return out.reshape(ids.shape + (table.shape[1],)).astype(weight.dtype)


def lm_head(h, embedding, output_weight, tied=False):
    h, w = lm_head_args(h, embedding, output_weight, tied)
    w = widen(w)  # (V, D)
    rows = widen(h).reshape(math.prod(h.shape[:-1]), h.shape[-1])  # (T, D); T or D may be 0
    out = np.empty((rows.shape[0], w.shape[0]), rows.dtype)
    _logits(rows, w, out)
    return out.reshape(h.shape[:-1] + (w.shape[0],)).astype(h.dtype)
