"""Rotating rows by RoPE tables (reference: llmref.ref.rope), shared by numba-cpu and
numba-cuda (see llmref.accel.kernels), and by kv_cache_decode.

Rows are visited as first, first + step, ... of the B*H*L rows: numba-cpu walks them all
(0, 1), a numba-cuda thread the ones of its grid-stride (thread index, grid size).
"""


def rotate_rows(x, cos, sin, interleaved, first, step, out):
    """out[b, h, t] = x[b, h, t] with the pairs of its first r = 2 * cos.shape[2] channels
    rotated, (a, c) -> (a cos - c sin, c cos + a sin), and the channels past r copied.

    cos, sin (Bp, L, r/2) in x's dtype, Bp = 1 (positions shared by the batch) or B. Pair i is
    (x[2i], x[2i+1]) when interleaved (GPT-J), (x[i], x[i + r/2]) otherwise (rotate-half)."""
    batch, heads, length, dim = x.shape
    half = cos.shape[2]
    for row in range(first, batch * heads * length, step):
        b = row // (heads * length)
        h = (row // length) % heads
        t = row % length
        pb = b if cos.shape[0] > 1 else 0
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
