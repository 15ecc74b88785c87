"""RoPE on numba-cuda (reference: llmref.ref.rope): one thread per (batch, head, token) row
runs the shared row math of llmref.accel.kernels.rope. The cos/sin tables are the
reference's (rope_tables: float64 angles, attention factor applied), rounded once to the
compute dtype; float16/bfloat16 inputs are widened to float32 on the host.
"""
import numpy as np
from numba import cuda

from llmref.accel._host import compute_dtype, widen
from llmref.accel.kernels import rope as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.rope import rope_tables

_rotate_rows = cuda.jit(device=True)(kernels.rotate_rows)


@cuda.jit
def rotate_kernel(x, cos, sin, interleaved, out):
    """One grid-stride of (batch, head, token) rows per thread; kv_cache_decode launches it."""
    _rotate_rows(x, cos, sin, interleaved, cuda.grid(1), cuda.gridsize(1), out)


def rope(x, positions, *, interleaved=False, partial_rotary_factor=1.0, **scaling):
    x, cos, sin = rope_tables(x, positions, partial_rotary_factor=partial_rotary_factor,
                              **scaling)  # (Bp, 1, L, r/2) float64
    acc = compute_dtype(x.dtype)
    out = Guarded(x.shape, acc, "numba-cuda rope")
    rotate_kernel[grid(np.prod(x.shape[:3])), THREADS](
        cuda.to_device(widen(x)), cuda.to_device(np.ascontiguousarray(cos[:, 0], dtype=acc)),
        cuda.to_device(np.ascontiguousarray(sin[:, 0], dtype=acc)), bool(interleaved), out.device)
    return out.result().astype(x.dtype)
