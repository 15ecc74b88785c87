"""Whole-row copies that the numba-cpu gathers and scatters share (embedding,
learned_positions, kv_write), spread over threads (prange) when the first argument, the
number of elements copied, is large enough (llmref.accel.numba_cpu._threads).

They move bit patterns (unsigned integers of the element's width), so every copy is exact at
every dtype and nothing is widened. numba-cuda runs the per-element loops of
llmref.accel.kernels (one thread an element); on the CPU the k // D, k % D of that loop cost
an integer division per element, 3-4x the copy itself, so here a row is a loop over its
elements, which LLVM turns into a memory copy (the gather's, which also counts non-finite
elements, into a vectorised copy-and-compare). (A slice assignment, out[n, :] = table[r, :],
is that copy only in the threaded build, where the parfor pass rewrites it; the serial build
ran numba's general strided copy, 1.3-1.8x slower on the bench shapes of kv_write and
embedding.)
"""
import numba
import numpy as np

from llmref.accel.numba_cpu._threads import prange_body, threaded_loop
from llmref.dtypes import FORMATS


def gather_table_rows(table, rows):
    """(table[rows] bit for bit, the number of inf and NaN elements in it) for a float table
    (V, D) and int64 rows (N,) checked to lie in [0, V)."""
    fmt = FORMATS[table.dtype.name]
    bits = np.dtype(fmt.bits_dtype)
    exponent = bits.type(((1 << fmt.exponent_bits) - 1) << fmt.fraction_bits)  # all ones: inf, NaN
    out = np.empty((rows.shape[0], table.shape[1]), bits)  # (N, D)
    nonfinite = gather_rows(out.size, np.ascontiguousarray(table).view(bits), rows, exponent, out)
    return out.view(table.dtype), nonfinite


@threaded_loop()
def gather_rows(table, rows, exponent, out):
    """out[n, :] = table[rows[n], :] for rows (N,) checked to lie in [0, len(table)); returns
    how many of the copied elements are inf or NaN, those whose exponent bits (the mask
    `exponent`, of table's unsigned type) are all ones. The count rides on the copy, so the
    rows are read once: checking them in a second pass (float_array on the gathered rows)
    took longer than the gather itself on the embedding bench shape."""
    nonfinite = 0
    for n in numba.prange(rows.shape[0]):
        nonfinite += _copy_row(table[rows[n]], out[n], exponent)
    return nonfinite


@prange_body()
def _copy_row(src, dst, exponent):
    """dst[:] = src[:]; the number of elements whose bits & exponent == exponent."""
    nonfinite = 0
    for k in range(dst.shape[0]):
        dst[k] = src[k]
        nonfinite += (src[k] & exponent) == exponent
    return nonfinite


@threaded_loop()
def scatter_rows(src, slots, pool):
    """pool[slots[t], :] = src[t, :] for every slot >= 0 (-1: not written); the slots are
    checked to be distinct, so no two threads write one row."""
    for t in numba.prange(src.shape[0]):
        if slots[t] >= 0:
            r = slots[t]
            for k in range(src.shape[1]):
                pool[r, k] = src[t, k]
