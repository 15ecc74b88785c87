"""Block-wide reductions for numba-cuda kernels that give a whole thread block to one row
(softmax, norm): every thread brings its partial value and gets the block's total back.

    shared = cuda.shared.array(THREADS, dtype)
    m = block_reduce(partial_max, shared, True)
"""
from numba import cuda

from llmref.accel.numba_cuda._launch import THREADS


@cuda.jit(device=True)
def block_reduce(value, shared, maximum):
    """The maximum (maximum=True) or the sum of `value` over the block's THREADS threads (a
    power of two), returned to every thread; `shared` holds THREADS values of the compute
    dtype and may be reused by the next reduction."""
    tid = cuda.threadIdx.x
    shared[tid] = value
    cuda.syncthreads()
    stride = THREADS // 2
    while stride > 0:
        if tid < stride:
            if maximum:
                shared[tid] = max(shared[tid], shared[tid + stride])
            else:
                shared[tid] += shared[tid + stride]
        cuda.syncthreads()
        stride //= 2
    total = shared[0]
    cuda.syncthreads()  # every thread has read shared[0] before shared[] is written again
    return total
