"""Embedding lookup and LM head as numba.njit loops (reference: llmref.ref.embedding)."""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.errors import InputError
from llmref.ref.embedding import embedding_normalizer
from llmref.validate import float_array, int_array, same_size


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
    weight = float_array("weight", weight, ndim=2)
    ids = int_array("ids", ids, low=0, high=weight.shape[0])
    scale = 1.0 if normalizer == "none" else embedding_normalizer(weight.shape[1], normalizer)
    table = widen(weight)
    flat_ids = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)  # (n,)
    out = np.empty((flat_ids.shape[0], table.shape[1]), table.dtype)
    _gather_rows(flat_ids, table, table.dtype.type(scale), out)
    return out.reshape(ids.shape + (table.shape[1],)).astype(weight.dtype)


def lm_head(h, embedding, output_weight, tied=False):
    h = float_array("h", h, min_ndim=1)
    matrices = {}
    for name, value in (("embedding", embedding), ("output_weight", output_weight)):
        matrices[name] = float_array(name, value, ndim=2)
        same_size(name, matrices[name].shape[1], h.shape[-1], "the last axis of h")
        if matrices[name].dtype != h.dtype:
            raise InputError(f"{name}: has dtype {matrices[name].dtype} but h has {h.dtype}")
    if not isinstance(tied, (bool, np.bool_)):
        raise InputError(f"tied: expected a bool, got {tied!r}")
    w = widen(matrices["embedding"] if tied else matrices["output_weight"])  # (V, D)
    rows = widen(h).reshape(-1, h.shape[-1])  # (T, D)
    out = np.empty((rows.shape[0], w.shape[0]), rows.dtype)
    _logits(rows, w, out)
    return out.reshape(h.shape[:-1] + (w.shape[0],)).astype(h.dtype)
