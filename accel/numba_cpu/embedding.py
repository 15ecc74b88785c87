"""The embedding lookup on numba-cpu (reference: llmref.ref.embedding): the rows named by the
ids are copied as bit patterns (llmref.accel.numba_cpu._rows.gather_table_rows: only the
gathered rows are touched, never the whole table), then scaled by c in the compute dtype and rounded
once when a normalizer is given:

    y[..., :] = weight[ids[...], :] * c

Checked by the reference's embedding_args, so every id is in range before the gather; the
gather counts the inf and NaN it copies, and a non-zero count goes to the reference's
check_read_rows for its error."""
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cpu._rows import gather_table_rows
from llmref.ref.embedding import check_read_rows, embedding_args


def embedding(ids, weight, normalizer="none"):
    ids, weight, scale = embedding_args(ids, weight, normalizer)
    flat_ids = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)  # (n,)
    rows, nonfinite = gather_table_rows(weight, flat_ids)  # (n, D)
    rows = rows.reshape(ids.shape + (weight.shape[1],))  # (..., D)
    if nonfinite:
        check_read_rows(rows)  # raises, naming weight
    if normalizer == "none":
        return rows
    return (widen(rows) * compute_dtype(weight.dtype).type(scale)).astype(weight.dtype, copy=False)
