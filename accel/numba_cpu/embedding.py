"""The embedding lookup on numba-cpu (reference: llmref.ref.embedding): the rows named by the
ids are copied as bit patterns (llmref.accel.numba_cpu._rows.gather_rows: only the gathered
rows are touched, never the whole table), then scaled by c in the compute dtype and rounded
once when a normalizer is given:

    y[..., :] = weight[ids[...], :] * c

Checked by the reference's embedding_args, so every id is in range before the gather, and
its check_read_rows on the gathered rows."""
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cpu._rows import gather_rows
from llmref.ref.embedding import check_read_rows, embedding_args

_BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}  # itemsize -> same-width unsigned integer


def embedding(ids, weight, normalizer="none"):
    ids, weight, scale = embedding_args(ids, weight, normalizer)
    bits = _BITS[weight.dtype.itemsize]
    flat_ids = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)  # (n,)
    out = np.empty((flat_ids.shape[0], weight.shape[1]), bits)  # (n, D)
    gather_rows(out.size, np.ascontiguousarray(weight).view(bits), flat_ids, out)
    rows = out.view(weight.dtype).reshape(ids.shape + (weight.shape[1],))  # (..., D)
    check_read_rows(rows)
    if normalizer == "none":
        return rows
    return (widen(rows) * compute_dtype(weight.dtype).type(scale)).astype(weight.dtype)
