"""Softmax and log-softmax on numba-cuda (reference: llmref.ref.softmax): one thread block
per row. Each pass of llmref.accel.kernels.softmax runs on every thread over its stride of
the row's columns, and the block combines the partial maximum and sum in shared memory
(llmref.accel.numba_cuda._reduce) before the next pass. Checked by the reference's
softmax_args / log_softmax_args; float16/bfloat16 rows are widened to float32 on the host
and the result rounded once.
"""
from functools import lru_cache

import numpy as np
from numba import cuda, float32, float64

from llmref.accel._host import rows_along
from llmref.accel.kernels import softmax as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded
from llmref.accel.numba_cuda._reduce import block_reduce
from llmref.ref.softmax import log_softmax_args, softmax_args

_row_max = cuda.jit(device=True)(kernels.row_max)
_row_exp_sum = cuda.jit(device=True)(kernels.row_exp_sum)
_normalise_row = cuda.jit(device=True)(kernels.normalise_row)


@lru_cache(maxsize=None)
def _kernel(dtype):
    """The row kernel whose shared memory holds `dtype` (float32 or float64) partials."""
    shared_dtype = float64 if dtype == np.float64 else float32

    @cuda.jit
    def softmax_rows(x, log, out):
        r, tid = cuda.blockIdx.x, cuda.threadIdx.x
        shared = cuda.shared.array(THREADS, shared_dtype)
        m = block_reduce(_row_max(x, r, tid, THREADS), shared, True)
        s = block_reduce(_row_exp_sum(x, r, m, log, tid, THREADS, out), shared, False)
        _normalise_row(out, r, s, log, tid, THREADS)

    return softmax_rows


def _run(x, axis, log):
    """x and axis already validated; an empty x has nothing to normalise (and no blocks)."""
    if x.size == 0:
        return x.copy()
    rows, restore = rows_along(x, axis)  # (rows, n)
    out = Guarded(rows.shape, rows.dtype, "numba-cuda softmax")
    _kernel(rows.dtype)[rows.shape[0], THREADS](cuda.to_device(rows), log, out.device)  # a block per row
    return restore(out.result())


def softmax(x, axis=-1):
    return _run(*softmax_args(x, axis), False)


def log_softmax(x, axis=-1):
    return _run(*log_softmax_args(x, axis), True)
