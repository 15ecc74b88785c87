"""Softmax and log-softmax through the CUDA C kernels of softmax.cu (reference:
llmref.ref.softmax): one block of THREADS threads per row, float32 accumulation, each output
rounded once; 16-bit floats travel as their bit patterns. Checked by the reference's
softmax_args / log_softmax_args before cupy is imported.
"""
import numpy as np

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import raw_bits
from llmref.accel.cupy._module import raw_module
from llmref.dtypes import SHORT
from llmref.errors import Unsupported
from llmref.ref.softmax import log_softmax_args, softmax_args

SOURCE = "softmax.cu"
THREADS = 256  # must equal THREADS in softmax.cu
DTYPES = ("float32", "float16", "bfloat16")  # the kernels' input types


def _run(x, axis, log):
    """x and axis already validated; an empty x has nothing to normalise (and no blocks)."""
    if str(x.dtype) not in DTYPES:  # the kernels accumulate in float32
        raise Unsupported(f"x: the cupy softmax kernels take float32, float16 and bfloat16, not {x.dtype}")
    if x.size == 0:
        return x.copy()
    import cupy

    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))  # (..., n)
    rows, n = moved.size // moved.shape[-1], moved.shape[-1]
    host_in = raw_bits(moved) if x.dtype.itemsize == 2 else moved
    buf = cupy.asarray(guarded_host_buffer(moved.size, host_in.dtype))
    kernel = raw_module(SOURCE).get_function(f"softmax_{SHORT[str(x.dtype)]}")
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
