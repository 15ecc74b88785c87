"""Softmax and log-softmax as numba.cuda kernels: one thread block per row.

Each block reduces its row's maximum and sum in shared memory (tree reduction over
THREADS lanes), then writes the row. float16/bfloat16 rows are widened to float32 on the host.
"""
import math

import numpy as np
from numba import cuda, float32

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import rows_along
from llmref.backends import simulated
from llmref.ref.softmax import log_softmax_args, softmax_args

# A warp-sized block under the simulator, where every thread is a Python thread.
THREADS = 32 if simulated() else 128


def _make_kernel(dtype):
    @cuda.jit
    def softmax_rows(x, out, log):
        row = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        n = x.shape[1]
        shared = cuda.shared.array(THREADS, dtype)
        # 1. row maximum
        m = -math.inf
        for j in range(tid, n, THREADS):
            m = max(m, x[row, j])
        shared[tid] = m
        cuda.syncthreads()
        stride = THREADS // 2
        while stride > 0:
            if tid < stride:
                shared[tid] = max(shared[tid], shared[tid + stride])
            cuda.syncthreads()
            stride //= 2
        m = shared[0]
        cuda.syncthreads()
        # 2. sum of exp(x - m)
        s = 0.0
        for j in range(tid, n, THREADS):
            s += math.exp(x[row, j] - m)
        shared[tid] = s
        cuda.syncthreads()
        stride = THREADS // 2
        while stride > 0:
            if tid < stride:
                shared[tid] += shared[tid + stride]
            cuda.syncthreads()
            stride //= 2
        s = shared[0]
        # 3. write
        for j in range(tid, n, THREADS):
            if log:
                out[row, j] = (x[row, j] - m) - math.log(s)
            else:
                out[row, j] = math.exp(x[row, j] - m) / s

    return softmax_rows


_KERNELS = {np.dtype(np.float32): _make_kernel(float32)}


def _kernel(dtype):
    if dtype not in _KERNELS:
        from numba import float64

        _KERNELS[dtype] = _make_kernel(float64)
    return _KERNELS[dtype]


def _run(x, axis, log):
    """x and axis already validated; an empty x has nothing to normalise (and no blocks)."""
    if x.size == 0:
        return x.copy()
    rows, restore = rows_along(x, axis)
    buf = guarded_host_buffer(rows.size, rows.dtype)
    d_buf = cuda.to_device(buf)
    d_out = interior(d_buf, rows.size).reshape(rows.shape)
    _kernel(rows.dtype)[rows.shape[0], THREADS](cuda.to_device(rows), d_out, log)
    buf = d_buf.copy_to_host()
    check_guards(buf, rows.size, "numba-cuda softmax")
    return restore(interior(buf, rows.size).reshape(rows.shape))


def softmax(x, axis=-1):
    return _run(*softmax_args(x, axis), False)


def log_softmax(x, axis=-1):
    return _run(*log_softmax_args(x, axis), True)
