"""The vectorisable exponentials of numba-cpu (accel/numba_cpu/_exp.py) against the C
library's exp, at the error each docstring states."""
import numba
import numpy as np

from llmref.accel.numba_cpu._exp import CHUNK, exp_nonpositive, exp_nonpositive_to32

T = -np.concatenate([np.linspace(0.0, 110.0, 200_001), [708.0, 745.0, 746.0, 1e4, np.inf]])


@numba.njit
def _blocks(t, to32):
    """exp of every element of t, block by block, as the kernels call them."""
    e = np.empty_like(t)
    tb, half, rest = np.empty(CHUNK), np.empty(CHUNK, np.int64), np.empty(CHUNK, np.int64)
    for j0 in range(0, t.size, CHUNK):
        w = min(CHUNK, t.size - j0)
        tb[:w] = t[j0:j0 + w]
        if to32:
            exp_nonpositive_to32(tb, e[j0:j0 + w], w)
        else:
            exp_nonpositive(tb, e[j0:j0 + w], half, rest, w)
    return e


def _relative_error(e, expected):
    normal = expected >= np.finfo(np.float64).tiny
    return np.max(np.abs(e[normal] - expected[normal]) / expected[normal])


def test_exp_nonpositive_is_within_a_few_float64_ulps_and_zero_below_its_range():
    e, expected = _blocks(T, False), np.exp(T)
    assert _relative_error(e, expected) <= 4 * 2.0**-53
    assert np.all(e[T < -746] == 0.0)


def test_exp_nonpositive_to32_is_a_fraction_of_a_float32_ulp_and_rounds_to_zero_below():
    """Its series ends at r^7 (5.5e-9 relative truncation), far below float32's 2^-24; and what
    its clamp at -708 changes rounds to 0 in float32, as exp itself does there."""
    e, expected = _blocks(T, True), np.exp(T)
    assert _relative_error(e, expected) <= 0.25 * 2.0**-24
    assert np.all(e[T <= -708].astype(np.float32) == 0.0)
