"""LayerNorm and RMSNorm through the CUDA C kernels of norm.cu (reference: llmref.ref.norm):
one block of THREADS threads per row, float32 accumulation, each output rounded once; 16-bit
floats travel as their bit patterns. Checked by the reference's layernorm_args /
rmsnorm_args before cupy is imported.
"""
from pathlib import Path

import numpy as np

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import raw_bits
from llmref.accel.cupy._module import raw_module
from llmref.dtypes import SHORT
from llmref.errors import Unsupported
from llmref.ref.norm import layernorm_args, rmsnorm_args

SOURCE = "norm.cu"
THREADS = 256  # must equal THREADS in the source
DTYPES = ("float32", "float16", "bfloat16")  # the kernels' input types


def _device(a):
    """A host array on the GPU; 16-bit floats travel as their bit patterns."""
    import cupy

    return cupy.asarray(raw_bits(a) if a.dtype.itemsize == 2 else np.ascontiguousarray(a))


def _run_rows(kernel_name, x, vectors, scalars):
    """kernel(x rows, *vectors, y rows, n, *scalars) over one block per row; y is guarded."""
    if str(x.dtype) not in DTYPES:  # the kernels accumulate in float32
        raise Unsupported(f"x: the cupy norm kernels take float32, float16 and bfloat16, not {x.dtype}")
    if x.size == 0:  # nothing to normalise, and no blocks to launch
        return x.copy()
    import cupy

    n = x.shape[-1]
    rows = np.ascontiguousarray(x).reshape(-1, n)  # (rows, n), n > 0
    storage = rows.dtype if rows.dtype.itemsize == 4 else np.uint16  # 16-bit floats as bits
    buf = cupy.asarray(guarded_host_buffer(rows.size, storage))
    kernel = raw_module(SOURCE).get_function(f"{kernel_name}_{SHORT[str(x.dtype)]}")
    kernel((rows.shape[0],), (THREADS,),
           (_device(rows), *[_device(v) for v in vectors], interior(buf, rows.size), np.int32(n),
            *[np.float32(s) for s in scalars]))
    host = cupy.asnumpy(buf)
    check_guards(host, rows.size, f"cupy {kernel_name}")
    return interior(host, rows.size).view(x.dtype).reshape(x.shape)


def layernorm(x, weight, bias, eps=1e-5):
    x, weight, bias, eps = layernorm_args(x, weight, bias, eps)
    return _run_rows("layernorm", x, [weight, bias], [eps])


def rmsnorm(x, weight, eps=1e-6, weight_offset=0.0):
    x, weight, eps, weight_offset = rmsnorm_args(x, weight, eps, weight_offset)
    return _run_rows("rmsnorm", x, [weight], [eps, weight_offset])
