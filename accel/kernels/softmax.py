"""Softmax and log-softmax of rows (reference: llmref.ref.softmax), shared by numba-cpu and
numba-cuda (see llmref.accel.kernels).

Three passes over row r, each over the columns first, first + step, ...:

    m = max_j x_j;   s = sum_j exp(x_j - m);   y_j = exp(x_j - m) / s   or   (x_j - m) - log s

numba-cpu runs each pass over the whole row (0, 1). On numba-cuda a block owns the row, each
of its THREADS threads takes the columns (thread index, THREADS), and the block combines the
threads' partial maximum and sum in shared memory between the passes.
"""
import math


def row_max(x, r, first, step):
    """The maximum of the visited x[r, j] (-inf if none)."""
    m = -math.inf
    for j in range(first, x.shape[1], step):
        m = max(m, x[r, j])
    return m


def row_exp_sum(x, r, m, log, first, step, out):
    """The sum of exp(x[r, j] - m) over the visited columns; each out[r, j] becomes x[r, j] - m
    (log) or exp(x[r, j] - m), the row's output before its normalisation."""
    s = 0.0
    for j in range(first, x.shape[1], step):
        shifted = x[r, j] - m
        e = math.exp(shifted)
        s += e
        out[r, j] = shifted if log else e
    return s


def normalise_row(out, r, s, log, first, step):
    """The visited out[r, j] minus log s (log) or times 1 / s, s the whole row's sum."""
    if log:
        log_s = math.log(s)
        for j in range(first, out.shape[1], step):
            out[r, j] -= log_s
    else:
        inv_s = 1.0 / s
        for j in range(first, out.shape[1], step):
            out[r, j] *= inv_s
