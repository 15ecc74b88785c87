"""The embedding lookup on numba-cuda (reference: llmref.ref.embedding): one thread per
output element runs the shared gather of llmref.accel.kernels.embedding into a guarded
buffer, the table widened to the compute dtype and the rows rounded once. Checked by the
reference's embedding_args, so every id is in range before the gather, and its
check_read_rows on the rows the ids read (on the host, before the launch)."""
import numpy as np
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import embedding as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.embedding import check_read_rows, embedding_args

_gather_rows = cuda.jit(device=True)(kernels.gather_rows)


@cuda.jit
def _gather(ids, weight, scale, out):
    _gather_rows(ids, weight, scale, cuda.grid(1), cuda.gridsize(1), out)


def embedding(ids, weight, normalizer="none"):
    ids, weight, scale = embedding_args(ids, weight, normalizer)
    check_read_rows(weight[np.unique(ids)])
    table = widen(weight)  # (V, D)
    flat_ids = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)  # (n,)
    out = Guarded((flat_ids.shape[0], table.shape[1]), table.dtype, "numba-cuda embedding")
    _gather[grid(out.n), THREADS](cuda.to_device(flat_ids), cuda.to_device(table),
                                  table.dtype.type(scale), out.device)
    return out.result().reshape(ids.shape + (table.shape[1],)).astype(weight.dtype)
