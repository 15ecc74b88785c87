"""RoPE as a numba.cuda kernel: one thread per (batch, head, token) row.

cos/sin tables come from the host in float64, rounded once to the compute dtype (see
llmref.accel.numba_cpu.positions.rope_tables); the kernel rotates the pairs of the first r
channels and copies the rest. float16/bfloat16 inputs are widened to float32 on the host.
"""
import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cpu.positions import rope_tables
from llmref.backends import simulated

THREADS = 32 if simulated() else 128


@cuda.jit
def _rope_rows(x, cos, sin, interleaved, out):
    row = cuda.grid(1)
    batch, heads, length, dim = x.shape
    if row >= batch * heads * length:
        return
    b = row // (heads * length)
    h = (row // length) % heads
    t = row % length
    pb = b if cos.shape[0] > 1 else 0
    half = cos.shape[2]
    for i in range(half):
        if interleaved:
            ia = 2 * i
            ib = 2 * i + 1
        else:
            ia = i
            ib = i + half
        a = x[b, h, t, ia]
        c = x[b, h, t, ib]
        out[b, h, t, ia] = a * cos[pb, t, i] - c * sin[pb, t, i]
        out[b, h, t, ib] = c * cos[pb, t, i] + a * sin[pb, t, i]
    for d in range(2 * half, dim):
        out[b, h, t, d] = x[b, h, t, d]


def rope(x, positions, interleaved=False, partial_rotary_factor=1.0, rope_type="default",
         **scaling):
    x, cos, sin = rope_tables(x, positions, partial_rotary_factor, rope_type, **scaling)
    n = x.size
    buf = guarded_host_buffer(n, compute_dtype(x.dtype))
    d_buf = cuda.to_device(buf)
    d_out = interior(d_buf, n).reshape(x.shape)
    rows = int(np.prod(x.shape[:3]))
    blocks = max(1, (rows + THREADS - 1) // THREADS)
    _rope_rows[blocks, THREADS](cuda.to_device(widen(x)), cuda.to_device(cos),
                                cuda.to_device(sin), bool(interleaved), d_out)
    buf = d_buf.copy_to_host()
    check_guards(buf, n, "numba-cuda rope")
    return interior(buf, n).reshape(x.shape).astype(x.dtype)
