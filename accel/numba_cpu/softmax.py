"""Softmax and log-softmax on numba-cpu (reference: llmref.ref.softmax): each row in turn
runs the shared passes of llmref.accel.kernels.softmax over all of its columns. Checked by
the reference's softmax_args / log_softmax_args; float16/bfloat16 rows are widened to
float32 (llmref.accel._host) and the result rounded once.
"""
import numba
import numpy as np

from llmref.accel._host import rows_along
from llmref.accel.kernels import softmax as kernels
from llmref.ref.softmax import log_softmax_args, softmax_args

_row_max = numba.njit(cache=True)(kernels.row_max)
_row_exp_sum = numba.njit(cache=True)(kernels.row_exp_sum)
_normalise_row = numba.njit(cache=True)(kernels.normalise_row)


@numba.njit(cache=True)
def _softmax_rows(x, log, out):
    for r in range(x.shape[0]):
        s = _row_exp_sum(x, r, _row_max(x, r, 0, 1), log, 0, 1, out)
        _normalise_row(out, r, s, log, 0, 1)


def _run(x, axis, log):
    """x and axis already validated; an empty x has nothing to normalise."""
    if x.size == 0:
        return x.copy()
    rows, restore = rows_along(x, axis)  # (rows, n)
    out = np.empty_like(rows)
    _softmax_rows(rows, log, out)
    return restore(out)


def softmax(x, axis=-1):
    return _run(*softmax_args(x, axis), False)


def log_softmax(x, axis=-1):
    return _run(*log_softmax_args(x, axis), True)
