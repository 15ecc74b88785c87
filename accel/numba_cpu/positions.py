"""RoPE as a numba.njit kernel (reference: llmref.ref.positions.rope).

The cos/sin tables are formed on the host in float64 from the spec's frequency formula
(rope_inv_freq) and rounded once to the compute dtype; the kernel rotates each pair
(x[i], x[i + r/2]) (rotate-half) or (x[2i], x[2i+1]) (interleaved) and copies the
channels past the rotary width.
"""
import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.ref.positions import rope_args, rope_inv_freq, rope_seq_len


@numba.njit(cache=True)
def _rope_rows(x, cos, sin, interleaved, out):
    """cos, sin: (Bp, L, r/2) with Bp = 1 (shared positions) or B."""
    batch, heads, length, dim = x.shape
    half = cos.shape[2]
    for b in range(batch):
        pb = b if cos.shape[0] > 1 else 0
        for h in range(heads):
            for t in range(length):
                for i in range(half):
                    if interleaved:
                        ia, ib = 2 * i, 2 * i + 1
                    else:
                        ia, ib = i, i + half
                    a, c = x[b, h, t, ia], x[b, h, t, ib]
                    out[b, h, t, ia] = a * cos[pb, t, i] - c * sin[pb, t, i]
                    out[b, h, t, ib] = c * cos[pb, t, i] + a * sin[pb, t, i]
                for d in range(2 * half, dim):
                    out[b, h, t, d] = x[b, h, t, d]


def rope_tables(x, positions, partial_rotary_factor, rope_type, **scaling):
    """Validated x, and cos/sin (Bp, L, r/2) in the compute dtype of x, from float64 angles."""
    x, positions, r = rope_args(x, positions, partial_rotary_factor)
    inv_freq, factor = rope_inv_freq(r, rope_type, seq_len=rope_seq_len(positions), **scaling)
    shared = positions.shape[0] if positions.ndim == 2 else 1
    positions = positions.reshape(shared, x.shape[2]).astype(np.float64)  # (Bp, L), Bp = 1 or B
    angle = positions[..., None] * inv_freq  # (Bp, L, r/2)
    dtype = compute_dtype(x.dtype)
    cos = np.ascontiguousarray((np.cos(angle) * factor[0]).astype(dtype))
    sin = np.ascontiguousarray((np.sin(angle) * factor[0]).astype(dtype))
    return x, cos, sin


def rope(x, positions, interleaved=False, partial_rotary_factor=1.0, rope_type="default",
         **scaling):
    x, cos, sin = rope_tables(x, positions, partial_rotary_factor, rope_type, **scaling)
    out = np.empty(x.shape, dtype=compute_dtype(x.dtype))
    _rope_rows(widen(x), cos, sin, bool(interleaved), out)
    return out.astype(x.dtype)
