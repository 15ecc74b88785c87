"""Learned absolute position embedding on numba-cpu (reference:
llmref.ref.positions.learned_positions): the shared element math of
llmref.accel.kernels.positions copies each looked-up element's bit pattern (uint16/32/64 by
the dtype's width), so the lookup is exact at every dtype and nothing is widened. Checked by
the reference's learned_positions_args (0 <= p < P).

(sinusoidal_positions has no accelerated counterpart: a table computed from integer positions
alone.)
"""
import numba
import numpy as np

from llmref.accel.kernels import positions as kernels
from llmref.ref.positions import learned_positions_args

_BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}  # itemsize -> same-width unsigned integer

_gather_rows = numba.njit(cache=True)(kernels.gather_rows)


def learned_positions(table, positions):
    table, positions = learned_positions_args(table, positions)
    rows = np.ascontiguousarray(positions.reshape(-1))  # (N,) flattened lookups
    bits = _BITS[table.dtype.itemsize]
    out = np.empty((rows.shape[0], table.shape[1]), dtype=bits)  # (N, D)
    _gather_rows(np.ascontiguousarray(table).view(bits), rows, 0, 1, out)
    return out.view(table.dtype).reshape(positions.shape + (table.shape[1],))  # (..., D)
