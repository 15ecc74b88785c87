"""RoPE on numba-cpu (reference: llmref.ref.rope): the cos/sin tables are the reference's
(rope_tables: float64 angles, attention factor applied), rounded once to the compute dtype;
the rotation is the shared row math of llmref.accel.kernels.rope.
"""
import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.kernels import rope as kernels
from llmref.ref.rope import rope_tables

rotate_rows = numba.njit(cache=True)(kernels.rotate_rows)  # kv_cache_decode runs it too


def rope(x, positions, *, interleaved=False, partial_rotary_factor=1.0, **scaling):
    x, cos, sin = rope_tables(x, positions, partial_rotary_factor=partial_rotary_factor,
                              **scaling)  # (Bp, 1, L, r/2) float64
    acc = compute_dtype(x.dtype)
    out = np.empty(x.shape, dtype=acc)
    rotate_rows(widen(x), np.ascontiguousarray(cos[:, 0], dtype=acc),
                np.ascontiguousarray(sin[:, 0], dtype=acc), bool(interleaved), 0, 1, out)
    return out.astype(x.dtype, copy=False)
