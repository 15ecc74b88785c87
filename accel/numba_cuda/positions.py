"""Learned absolute position embedding on numba-cuda (reference:
llmref.ref.positions.learned_positions): one thread per output element runs the shared
element math of llmref.accel.kernels.positions, copying its element's bit pattern
(uint16/32/64 by the dtype's width), so the lookup is exact at every dtype and nothing is
widened. Checked on the host by the reference's learned_positions_args (0 <= p < P) and its
check_read_rows on the rows the positions read, before the kernel runs; the output is a
guarded buffer.

(sinusoidal_positions has no accelerated counterpart: a table computed from integer positions
alone.)
"""
import numpy as np
from numba import cuda

from llmref.accel.kernels import positions as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.positions import check_read_rows, learned_positions_args

_BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}  # itemsize -> same-width unsigned integer

_gather_rows = cuda.jit(device=True)(kernels.gather_rows)


@cuda.jit
def _gather(table_bits, rows, out_bits):
    _gather_rows(table_bits, rows, cuda.grid(1), cuda.gridsize(1), out_bits)


def learned_positions(table, positions):
    table, positions = learned_positions_args(table, positions)
    check_read_rows(table[np.unique(positions)])
    rows = np.ascontiguousarray(positions.reshape(-1))  # (N,) flattened lookups
    bits = _BITS[table.dtype.itemsize]
    out = Guarded((rows.shape[0], table.shape[1]), bits, "numba-cuda learned_positions")
    _gather[grid(out.n), THREADS](cuda.to_device(np.ascontiguousarray(table).view(bits)),
                                  cuda.to_device(rows), out.device)
    return out.result().view(table.dtype).reshape(positions.shape + (table.shape[1],))
