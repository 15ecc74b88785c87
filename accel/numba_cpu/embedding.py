"""The embedding lookup on numba-cpu (reference: llmref.ref.embedding): the shared gather of
llmref.accel.kernels.embedding over every output element, the table widened to the compute
dtype and the rows rounded once. Checked by the reference's embedding_args, so every id is
in range before the gather."""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import embedding as kernels
from llmref.ref.embedding import embedding_args

_gather_rows = numba.njit(cache=True)(kernels.gather_rows)


def embedding(ids, weight, normalizer="none"):
    ids, weight, scale = embedding_args(ids, weight, normalizer)
    table = widen(weight)  # (V, D)
    flat_ids = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)  # (n,)
    out = np.empty((flat_ids.shape[0], table.shape[1]), table.dtype)
    _gather_rows(flat_ids, table, table.dtype.type(scale), 0, 1, out)
    return out.reshape(ids.shape + (table.shape[1],)).astype(weight.dtype)
