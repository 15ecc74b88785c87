"""exp(t) of a block of t <= 0, written so LLVM vectorises it: numba-cpu has no vector exp
(Intel's SVML is not installed with numba), so a libm call per element made the softmax 3x
slower than NumPy's AVX2 exp. Used by the kernels whose time is their exponentials.

    t = k ln2 + r,   k = round(t / ln2),   |r| <= ln2 / 2
    exp(t) = 2^k exp(r),   exp(r) = sum_{i<=12} r^i / i!   (truncation < 2e-16 relative)

k comes from the round-to-integer trick: t/ln2 + 1.5 * 2^52 holds k in its low mantissa bits,
so k is an integer subtraction on the bits, with no float-to-int conversion (AVX2 has none
for 64-bit lanes). 2^k is built from bits, (k + 1023) << 52, in two halves
2^h * 2^(k - h), h = k >> 1, so each half is a normal number and exp(r) * 2^h * 2^(k-h)
rounds once, correctly into the subnormals. t < -746 gives 0 (exp(-746) < 2^-1075), t = -inf
too. t must not be NaN (callers handle the all -inf slice, where t would be, themselves).
Error: about 2 ulps of float64, far below every float32 tolerance.

exp_nonpositive32 is the same algorithm in float32 for the kernels that compute in float32
(8 AVX2 lanes to float64's 4): shifter 1.5 * 2^23, ln 2 split as in Cephes' expf (LN2_HI32
has 9 significant bits, so k LN2_HI32 is exact for |k| < 2^15), the Taylor series to r^7
(truncation r^8/8! < 6e-9 relative, below float32's 6e-8 roundoff), 2^k in two halves of
int32 bits (k + 127) << 23; t < -104 gives 0 (exp(-104) < 2^-150, half the least subnormal:
it rounds to 0; a clamp at -103 gave 2^-149, so silu(-1e38) was -1.4e-7). Measured over 2e6
points of [-110, 0]: at most 1.7 ulps of float32 relative error on normal results, subnormal
results within one subnormal step.
"""
import numba
import numpy as np
from numba import types
from numba.extending import overload

CHUNK = 512  # elements per block: the four float64/int64 blocks stay in L1
LOG2E = 1.4426950408889634
LN2_HI = 0.693147180369123816490  # ln 2 = LN2_HI + LN2_LO, LN2_HI with 32 trailing zero bits
LN2_LO = 1.90821492927058770002e-10
SHIFTER = 6755399441055744.0  # 1.5 * 2**52
SHIFTER_BITS = 0x4338000000000000  # its bit pattern
SHIFTER32 = np.float32(12582912.0)  # 1.5 * 2**23
SHIFTER32_BITS = 0x4B400000  # its bit pattern
LOG2E32 = np.float32(LOG2E)
LN2_HI32 = np.float32(0.693359375)  # ln 2 = LN2_HI32 + LN2_LO32 (Cephes expf)
LN2_LO32 = np.float32(-2.12194440e-4)


@numba.njit(inline="always")
def _exp_reduced(r):
    """exp(r) for |r| <= ln2/2: the Taylor series to r^12, Horner form."""
    return 1.0 + r * (1.0 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (
        1 / 720 + r * (1 / 5040 + r * (1 / 40320 + r * (1 / 362880 + r * (
            1 / 3628800 + r * (1 / 39916800 + r * (1 / 479001600))))))))))))


@numba.njit(inline="always")
def exp_nonpositive(t, e, half, rest, n):
    """e[:n] = exp(t[:n]) for t <= 0. t[:n] is overwritten; half, rest: int64 scratch."""
    for i in range(n):  # reduction: e = exp(r), t = t/ln2 + SHIFTER (k in its bits)
        x = max(t[i], -746.0)
        y = x * LOG2E + SHIFTER
        k = y - SHIFTER
        e[i] = _exp_reduced((x - k * LN2_HI) - k * LN2_LO)
        t[i] = y
    bits = t.view(np.int64)
    for i in range(n):  # 2^h and 2^(k - h) as bits
        k = bits[i] - SHIFTER_BITS
        h = k >> 1
        half[i] = (h + 1023) << 52
        rest[i] = (k - h + 1023) << 52
    half_scale, rest_scale = half.view(np.float64), rest.view(np.float64)
    for i in range(n):
        e[i] = e[i] * half_scale[i] * rest_scale[i]


@numba.njit(cache=True, fastmath={"reassoc", "nsz"})
def block_sum(e, n):
    """sum_i e[i] for i < n, in float64, in whatever order vectorises (the sum of a block of
    exponentials)."""
    s = 0.0
    for i in range(n):
        s += e[i]
    return s


@numba.njit(inline="always")
def _exp_reduced32(r):
    """exp(r) for |r| <= ln2/2 in float32: the Taylor series to r^7, Horner form."""
    f = np.float32
    return f(1) + r * (f(1) + r * (f(1 / 2) + r * (f(1 / 6) + r * (f(1 / 24) + r * (
        f(1 / 120) + r * (f(1 / 720) + r * f(1 / 5040)))))))


@numba.njit(inline="always")
def exp_nonpositive32(t, e, half, rest, n):
    """e[:n] = exp(t[:n]) for float32 t <= 0. t[:n] is overwritten; half, rest: int32 scratch."""
    for i in range(n):  # reduction: e = exp(r), t = t/ln2 + SHIFTER32 (k in its bits)
        x = max(t[i], np.float32(-104.0))
        y = x * LOG2E32 + SHIFTER32
        k = y - SHIFTER32
        e[i] = _exp_reduced32((x - k * LN2_HI32) - k * LN2_LO32)
        t[i] = y
    bits = t.view(np.int32)
    for i in range(n):  # 2^h and 2^(k - h) as bits
        k = bits[i] - SHIFTER32_BITS
        h = k >> 1
        half[i] = (h + 127) << 23
        rest[i] = (k - h + 127) << 23
    half_scale, rest_scale = half.view(np.float32), rest.view(np.float32)
    for i in range(n):
        e[i] = e[i] * half_scale[i] * rest_scale[i]


@numba.njit(inline="always")
def scratch32():
    """The four blocks exp_nonpositive32 works in: (t, e, half, rest)."""
    return (np.empty(CHUNK, np.float32), np.empty(CHUNK, np.float32), np.empty(CHUNK, np.int32),
            np.empty(CHUNK, np.int32))


def exp_block(t, e, half, rest, n):
    """e[:n] = exp(t[:n]) for t <= 0 at t's dtype: exp_nonpositive32 for float32 blocks,
    exp_nonpositive otherwise (t overwritten; half, rest: bits_like(t))."""


@overload(exp_block, inline="always")
def _exp_block_impl(t, e, half, rest, n):
    if t.dtype == types.float32:
        return lambda t, e, half, rest, n: exp_nonpositive32(t, e, half, rest, n)
    return lambda t, e, half, rest, n: exp_nonpositive(t, e, half, rest, n)


def bits_like(t):
    """A block of CHUNK integers of t's width (the exponent scratch of exp_block)."""


@overload(bits_like, inline="always")
def _bits_like_impl(t):
    if t.dtype == types.float32:
        return lambda t: np.empty(CHUNK, np.int32)
    return lambda t: np.empty(CHUNK, np.int64)
