"""Softmax and log-softmax through the CUDA C kernels in softmax.cu (one block per row)."""
import numpy as np

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import raw_bits
from llmref.accel.cupy._module import raw_module
from llmref.ref.softmax import log_softmax_args, softmax_args

THREADS = 256  # must equal THREADS in softmax.cu
_KERNEL = {"float32": "softmax_f32", "float16": "softmax_f16", "bfloat16": "softmax_bf16"}


def _run(x, axis, log):
    """x and axis already validated; an empty x has nothing to normalise (and no blocks)."""
    if x.dtype == np.float64:  # the kernels accumulate in float32; float64 stays on the host path
        raise NotImplementedError("cupy softmax kernels take float32, float16 and bfloat16")
    if x.size == 0:
        return x.copy()
    import cupy

    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))  # (..., n)
    rows, n = moved.size // moved.shape[-1], moved.shape[-1]
    host_in = raw_bits(moved) if x.dtype.itemsize == 2 else moved
    buf = cupy.asarray(guarded_host_buffer(moved.size, host_in.dtype))
    kernel = raw_module("softmax.cu").get_function(_KERNEL[str(x.dtype)])
    kernel((rows,), (THREADS,), (cupy.asarray(host_in), interior(buf, moved.size), np.int32(n),
                                 np.int32(log)))
    host = cupy.asnumpy(buf)
    check_guards(host, moved.size, "cupy softmax")
    y = interior(host, moved.size).view(x.dtype).reshape(moved.shape)
    return np.moveaxis(y, -1, axis)


def softmax(x, axis=-1):
    return _run(*softmax_args(x, axis), False)


def log_softmax(x, axis=-1):
    return _run(*log_softmax_args(x, axis), True)
