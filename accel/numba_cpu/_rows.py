"""Whole-row copies that the numba-cpu gathers and scatters share (embedding,
learned_positions, kv_write), spread over threads (prange) when the first argument, the
number of elements copied, is large enough (llmref.accel.numba_cpu._threads).

They move bit patterns (unsigned integers of the element's width), so every copy is exact at
every dtype and nothing is widened. numba-cuda runs the per-element loops of
llmref.accel.kernels (one thread an element); on the CPU the k // D, k % D of that loop cost
an integer division per element, 3-4x the copy itself, so here a row is a loop over its
elements, which LLVM turns into a memory copy. (A slice assignment, out[n, :] = table[r, :],
is that copy only in the threaded build, where the parfor pass rewrites it; the serial build
ran numba's general strided copy, 1.3-1.8x slower on the bench shapes of kv_write and
embedding.)
"""
import numba

from llmref.accel.numba_cpu._threads import threaded_loop


@threaded_loop()
def gather_rows(table, rows, out):
    """out[n, :] = table[rows[n], :] for rows (N,) checked to lie in [0, len(table))."""
    for n in numba.prange(rows.shape[0]):
        r = rows[n]
        for k in range(out.shape[1]):
            out[n, k] = table[r, k]


@threaded_loop()
def scatter_rows(src, slots, pool):
    """pool[slots[t], :] = src[t, :] for every slot >= 0 (-1: not written); the slots are
    checked to be distinct, so no two threads write one row."""
    for t in numba.prange(src.shape[0]):
        if slots[t] >= 0:
            r = slots[t]
            for k in range(src.shape[1]):
                pool[r, k] = src[t, k]
