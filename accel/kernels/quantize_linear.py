"""Linear quantization per slice and per element (reference: llmref.ref.quantize_linear),
shared by numba-cpu and numba-cuda (see llmref.accel.kernels).

x is (S, n), one slice per row. slice_params fills scale[r], zero[r] and the ternary
threshold delta[r] of one slice; element_code writes one code q[r, j] and its x_hat[r, j].
The scale is read back from `scale` (x's dtype) before it is used, as the reference does.
"""
from llmref.ref.quantize_linear import TERNARY_THRESHOLD

SYMMETRIC, AFFINE, BINARY, TERNARY = range(4)  # index in llmref.ref.quantize_linear.SCHEMES


def slice_params(x, r, scheme, signed, bits, qmin, qmax, scale, zero, delta):
    """Slice r:  symmetric S = max|x| / (2^(b-1) - 1), Z = 0 or 2^(b-1);
    affine S = (max - min) / (qmax - qmin), Z = clamp(qmin - round_half_even(min / S));
    binary S = mean|x|;  ternary delta = 0.7 mean|x|, S = mean |x| over |x| > delta;
    S = 1 where the slice gives none (all zero, max = min, nothing above delta)."""
    n = x.shape[1]
    lo, hi, amax, total = x[r, 0], x[r, 0], 0.0, 0.0
    for j in range(n):
        lo = min(lo, x[r, j])
        hi = max(hi, x[r, j])
        amax = max(amax, abs(x[r, j]))
        total += abs(x[r, j])
    z = 0
    d = 0.0
    if scheme == SYMMETRIC:
        s = amax / (2 ** (bits - 1) - 1) if amax > 0 else 1.0
        z = 0 if signed else 2 ** (bits - 1)
    elif scheme == AFFINE:
        s = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    elif scheme == BINARY:
        s = total / n if total > 0 else 1.0
    else:
        d = TERNARY_THRESHOLD * (total / n)
        big, count = 0.0, 0
        for j in range(n):
            if abs(x[r, j]) > d:
                big += abs(x[r, j])
                count += 1
        s = big / count if count > 0 else 1.0
    scale[r] = s
    if scheme == AFFINE:
        z = min(max(qmin - round(lo / scale[r]), qmin), qmax)  # round(): half to even
    zero[r] = z
    delta[r] = d


def element_code(x, r, j, scheme, qmin, qmax, scale, zero, delta, q, x_hat):
    """q[r, j] = clamp(round_half_even(x / S) + Z) (binary: sign with sign(0) = +1; ternary:
    +-1 beyond +-delta, else 0) and x_hat[r, j] = (q - Z) * S."""
    v, s, z = x[r, j], scale[r], zero[r]
    if scheme == BINARY:
        c = 1 if v >= 0 else -1
    elif scheme == TERNARY:
        c = 1 if v > delta[r] else (-1 if v < -delta[r] else 0)
    else:
        c = min(max(round(v / s) + z, qmin), qmax)
    q[r, j] = c
    x_hat[r, j] = (c - z) * s
