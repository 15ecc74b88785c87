"""The learned position lookup (reference: llmref.ref.positions.learned_positions), shared by
numba-cpu and numba-cuda (see llmref.accel.kernels).

Elements are visited as first, first + step, ... of the N*D output elements: numba-cpu walks
them all (0, 1), a numba-cuda thread the ones of its grid-stride (thread index, grid size).
"""


def gather_rows(table_bits, rows, first, step, out_bits):
    """out_bits[n, d] = table_bits[rows[n], d]: bit patterns (unsigned integers of the float's
    width) are copied, so the lookup is exact at every dtype."""
    dim = table_bits.shape[1]
    for e in range(first, rows.shape[0] * dim, step):
        n = e // dim
        d = e % dim
        out_bits[n, d] = table_bits[rows[n], d]
