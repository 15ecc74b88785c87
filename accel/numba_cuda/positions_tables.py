"""Learned absolute position embedding as a numba.cuda gather (reference:
llmref.ref.positions.learned_positions).

    out[b, l, :] = table[positions[b, l], :]

One thread per output element copies its element's bit pattern (uint16/32/64 by the dtype's
width), so the lookup is exact in float64, float32, float16 and bfloat16 alike and nothing is
widened. Arguments are checked on the host by the reference's learned_positions_args (0 <= p < P)
before the kernel runs.

(sinusoidal_positions has no GPU counterpart: a table computed from integer positions alone.)
"""
import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.backends import simulated
from llmref.ref.positions import learned_positions_args

THREADS = 32 if simulated() else 128

_BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}  # itemsize -> same-width unsigned integer


@cuda.jit
def _gather_rows(table_bits, rows, out_bits):
    """out_bits[n, d] = table_bits[rows[n], d], one thread per element."""
    e = cuda.grid(1)
    dim = table_bits.shape[1]
    if e >= rows.shape[0] * dim:
        return
    n = e // dim
    d = e % dim
    out_bits[n, d] = table_bits[rows[n], d]


def learned_positions(table, positions):
    table, positions = learned_positions_args(table, positions)
    rows = np.ascontiguousarray(positions.reshape(-1))  # (N,) flattened lookups
    bits = _BITS[table.dtype.itemsize]
    table_bits = np.ascontiguousarray(table).view(bits)  # (P, D)
    shape = (rows.shape[0], table.shape[1])  # (N, D)
    n = shape[0] * shape[1]
    buf = guarded_host_buffer(n, bits)
    d_buf = cuda.to_device(buf)
    blocks = max(1, (n + THREADS - 1) // THREADS)
    _gather_rows[blocks, THREADS](cuda.to_device(table_bits), cuda.to_device(rows),
                                  interior(d_buf, n).reshape(shape))
    buf = d_buf.copy_to_host()
    check_guards(buf, n, "numba-cuda learned_positions")
    out = interior(buf, n).view(table.dtype).reshape(positions.shape + (table.shape[1],))
    return out.copy()  # (..., D), detached from the guarded buffer
