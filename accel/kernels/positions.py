"""The learned position lookup (reference: llmref.ref.positions.learned_positions), numba-
cuda's per-element loop (see llmref.accel.kernels).

Elements are visited as first, first + step, ... of the N*D output elements: a numba-cuda
thread visits the ones of its grid-stride (thread index, grid size). numba-cpu copies whole
rows instead (llmref.accel.numba_cpu._rows): the k // D, k % D here cost a division per
element.
"""


def gather_rows(table_bits, rows, first, step, out_bits):
    """out_bits[n, d] = table_bits[rows[n], d]: bit patterns (unsigned integers of the float's
    width) are copied, so the lookup is exact at every dtype."""
    dim = table_bits.shape[1]
    for e in range(first, rows.shape[0] * dim, step):
        n = e // dim
        d = e % dim
        out_bits[n, d] = table_bits[rows[n], d]
