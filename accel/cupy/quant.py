"""W4A16 matmul through the CUDA C kernels in w4a16.cu (reference: llmref.ref.quant.w4a16_matmul).

The kernels read llmref's canonical INT4 layout directly: `kernel_words` is the (exact, NumPy)
map from the canonical bytes to the 32-bit words a lane unpacks, code q[n, 8w + i] at bits
[4i, 4i+4) of word w, and `canonical_bytes` is its inverse.
"""
import numpy as np

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import raw_bits
from llmref.accel.cupy._module import raw_module
from llmref.errors import Unsupported
from llmref.ref.quant import w4a16_args

WARPS = 8  # must equal WARPS in w4a16.cu: output columns per block
_KIND = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


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


def _device_operand(a):
    import cupy

    return cupy.asarray(raw_bits(a) if a.dtype.itemsize == 2 else np.ascontiguousarray(a))


def w4a16_matmul(x, w_packed, scales, zeros, group_size=128):
    x, w_packed, scales, zeros = w4a16_args(x, w_packed, scales, zeros, group_size)  # before cupy
    import cupy

    (m, k), n = x.shape, w_packed.shape[0]
    if str(x.dtype) not in _KIND:
        raise Unsupported(f"x: the cupy kernels take float32, float16 and bfloat16, not {x.dtype}")
    if group_size % 32:
        raise Unsupported(f"group_size: the kernel needs a multiple of 32, got {group_size}")
    scales = np.asarray(scales).astype(x.dtype)
    out_host = guarded_host_buffer(m * n, np.float32 if x.dtype == np.float32 else np.uint16)
    buf = cupy.asarray(out_host)
    name = f"w4a16_{_KIND[str(x.dtype)]}_m{rows_per_pass(m)}"
    kernel = raw_module("w4a16.cu").get_function(name)
    kernel(((n + WARPS - 1) // WARPS,), (WARPS * 32,),
           (_device_operand(x), cupy.asarray(kernel_words(w_packed)), _device_operand(scales),
            cupy.asarray(np.ascontiguousarray(zeros, dtype=np.uint8)), interior(buf, m * n),
            np.int32(m), np.int32(n), np.int32(k), np.int32(group_size)))
    host = cupy.asnumpy(buf)
    check_guards(host, m * n, "cupy w4a16_matmul")
    return interior(host, m * n).view(x.dtype).reshape(m, n)
