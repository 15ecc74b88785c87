"""Learned absolute position embedding on numba-cpu (reference:
llmref.ref.positions.learned_positions): the looked-up rows are copied as bit patterns
(llmref.accel.numba_cpu._rows.gather_rows), so the lookup is exact at every dtype and nothing
is widened. Checked by the reference's learned_positions_args (0 <= p < P).

(sinusoidal_positions has no accelerated counterpart: a table computed from integer positions
alone.)
"""
import numpy as np

from llmref.accel.numba_cpu._rows import gather_rows
from llmref.ref.positions import learned_positions_args

_BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}  # itemsize -> same-width unsigned integer


def learned_positions(table, positions):
    table, positions = learned_positions_args(table, positions)
    rows = np.ascontiguousarray(positions.reshape(-1), dtype=np.int64)  # (N,) flattened lookups
    bits = _BITS[table.dtype.itemsize]
    out = np.empty((rows.shape[0], table.shape[1]), dtype=bits)  # (N, D)
    gather_rows(out.size, np.ascontiguousarray(table).view(bits), rows, out)
    return out.view(table.dtype).reshape(positions.shape + (table.shape[1],))  # (..., D)
