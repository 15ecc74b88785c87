"""Power-of-two quantization per slice and per element (reference:
llmref.ref.log2_quantize), shared by numba-cpu and numba-cuda (see llmref.accel.kernels).
x is (S, n), one slice per row.
"""
import math

from llmref.ref.log2_quantize import SQRT_HALF


def slice_scale(x, r):
    """s = max |x[r, :]|, 1 for an all-zero slice."""
    amax = 0.0
    for j in range(x.shape[1]):
        amax = max(amax, abs(x[r, j]))
    return amax if amax > 0 else 1.0


def element_code(x, r, j, scale, levels, codes, x_hat):
    """e = round(log2 |x| / s) from the frexp mantissa (|x| / s = m 2^p, m in [0.5, 1):
    e = p - 1 if m < 2^-1/2 else p, exactly); codes[r, j] = sign(x) (e + L), or 0 for x = 0
    or e < 1 - L; x_hat[r, j] = sign(code) s 2^(|code| - L)."""
    s = scale[r]
    ratio = abs(x[r, j]) / s
    c = 0
    if ratio > 0:
        m, p = math.frexp(ratio)
        e = p - 1 if m < SQRT_HALF else p
        if e >= 1 - levels:
            c = e + levels
            if x[r, j] < 0:
                c = -c
    codes[r, j] = c
    x_hat[r, j] = 0.0 if c == 0 else math.copysign(math.ldexp(s, abs(c) - levels), c)
