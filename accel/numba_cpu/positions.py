"""Learned absolute position embedding on numba-cpu (reference:
llmref.ref.positions.learned_positions): the looked-up rows are copied as bit patterns
(llmref.accel.numba_cpu._rows.gather_table_rows), so the lookup is exact at every dtype and
nothing is widened. Checked by the reference's learned_positions_args (0 <= p < P); the
gather counts the inf and NaN it copies, and a non-zero count goes to the reference's
check_read_rows for its error.

(sinusoidal_positions has no accelerated counterpart: a table computed from integer positions
alone.)
"""
import numpy as np

from llmref.accel.numba_cpu._rows import gather_table_rows
from llmref.ref.positions import check_read_rows, learned_positions_args


def learned_positions(table, positions):
    table, positions = learned_positions_args(table, positions)
    flat = np.ascontiguousarray(positions.reshape(-1), dtype=np.int64)  # (N,) flattened lookups
    rows, nonfinite = gather_table_rows(table, flat)  # (N, D)
    rows = rows.reshape(positions.shape + (table.shape[1],))  # (..., D)
    if nonfinite:
        check_read_rows(rows)  # raises, naming table
    return rows
