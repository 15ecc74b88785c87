"""W4A16 matmul through the CUDA C kernels in w4a16_matmul.cu (reference:
llmref.ref.w4a16_matmul).

The kernels read llmref's canonical INT4 layout directly: `kernel_words` is the (exact, NumPy)
map from the canonical bytes to the 32-bit words a lane unpacks, code q[n, 8w + i] at bits
[4i, 4i+4) of word w, and `canonical_bytes` is its inverse.
"""
import numpy as np

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import raw_bits
from llmref.accel.cupy._module import raw_module
from llmref.dtypes import SHORT
from llmref.errors import Unsupported
from llmref.ref.w4a16_matmul import w4a16_matmul_args

SOURCE = "w4a16_matmul.cu"
WARPS = 8  # must equal WARPS in w4a16_matmul.cu: output columns per block
DTYPES = ("float32", "float16", "bfloat16")  # the kernels' activation types


def kernel_words(w_packed):
    """(N, K/2) canonical bytes -> (N, K/8) little-endian uint32 words, word w nibble i = q[n, 8w+i]."""
    w_packed = np.ascontiguousarray(w_packed, dtype=np.uint8)
    return w_packed.view("<u4")  # (N, K/2) bytes -> (N, K/8) words


def canonical_bytes(words):
    """Inverse of kernel_words."""
    return np.ascontiguousarray(words, dtype="<u4").view(np.uint8)  # (N, K/8) -> (N, K/2)


def rows_per_pass(m):
    """The kernel variant: 1, 2, 4 or 8 activation rows per pass over a weight row."""
    return next(mt for mt in (1, 2, 4, 8) if mt >= min(m, 8))


def kernel_name(dtype, m):
    """The kernel for activations of `dtype` and M rows, e.g. w4a16_f16_m8."""
    return f"w4a16_{SHORT[str(dtype)]}_m{rows_per_pass(m)}"


def _device_operand(a):
    import cupy

    return cupy.asarray(raw_bits(a) if a.dtype.itemsize == 2 else np.ascontiguousarray(a))


def w4a16_matmul(x, w_packed, scales, zeros, group_size=128):
    x, w_packed, scales, zeros, group_size = w4a16_matmul_args(  # before cupy is imported
        x, w_packed, scales, zeros, group_size)
    if str(x.dtype) not in DTYPES:
        raise Unsupported(f"x: the cupy kernels take float32, float16 and bfloat16, not {x.dtype}")
    if group_size % 32:
        raise Unsupported(f"group_size: the kernel needs a multiple of 32, got {group_size}")
    import cupy

    (m, k), n = x.shape, w_packed.shape[0]
    scales = np.asarray(scales).astype(x.dtype)
    out_host = guarded_host_buffer(m * n, np.float32 if x.dtype == np.float32 else np.uint16)
    buf = cupy.asarray(out_host)
    kernel = raw_module(SOURCE).get_function(kernel_name(x.dtype, m))
    kernel(((n + WARPS - 1) // WARPS,), (WARPS * 32,),
           (_device_operand(x), cupy.asarray(kernel_words(w_packed)), _device_operand(scales),
            cupy.asarray(np.ascontiguousarray(zeros, dtype=np.uint8)), interior(buf, m * n),
            np.int32(m), np.int32(n), np.int32(k), np.int32(group_size)))
    host = cupy.asnumpy(buf)
    check_guards(host, m * n, "cupy w4a16_matmul")
    return interior(host, m * n).view(x.dtype).reshape(m, n)
