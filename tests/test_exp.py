"""The vectorisable exponentials of numba-cpu (accel/numba_cpu/_exp.py) against the C
library's exp, at the error each docstring states."""
import numba
import numpy as np

from llmref.accel.numba_cpu._exp import CHUNK, bits_like, exp_block

T = -np.concatenate([np.linspace(0.0, 110.0, 200_001), [103.9, 104.0, 708.0, 745.0, 746.0, 1e4, np.inf]])


@numba.njit
def _blocks(t):
    """exp of every element of t at t's dtype, block by block, as the kernels call them."""
    e = np.empty_like(t)
    tb = np.empty(CHUNK, t.dtype)
    half, rest = bits_like(tb), bits_like(tb)
    for j0 in range(0, t.size, CHUNK):
        w = min(CHUNK, t.size - j0)
        tb[:w] = t[j0:j0 + w]
        exp_block(tb, e[j0:j0 + w], half, rest, w)
    return e


def test_exp_nonpositive_is_within_a_few_float64_ulps_and_zero_below_its_range():
    e, expected = _blocks(T), np.exp(T)
    normal = expected >= np.finfo(np.float64).tiny
    assert np.max(np.abs(e[normal] - expected[normal]) / expected[normal]) <= 4 * 2.0**-53
    assert np.all(e[T < -746] == 0.0)


def test_exp_nonpositive32_is_within_two_float32_ulps_and_rounds_to_zero_below_its_range():
    """Its docstring: at most 1.7 ulps relative on normal results, a subnormal result within
    one subnormal step, and 0 for t < -104 (below half the least subnormal, where exp rounds
    to 0), judged against float64's exp of the same float32 arguments."""
    t = T.astype(np.float32)
    e, expected = _blocks(t).astype(np.float64), np.exp(t.astype(np.float64))
    normal = expected >= np.finfo(np.float32).tiny
    assert np.max(np.abs(e[normal] - expected[normal]) / expected[normal]) <= 2 * 2.0**-24
    assert np.max(np.abs(e[~normal] - expected[~normal])) <= 2.0**-149
    assert np.all(e[t < -104] == 0.0)
