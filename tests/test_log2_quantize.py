"""log2_quantize: bad input, the log-domain rounding bound with numba-cpu bit for bit, and the
near-boundary model (float32 log2 passes with the flips counted)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from _quant import assert_masks_mark_only_differing_alternatives, audit_flips, failures
from llmref import InputError
from llmref.accel.numba_cpu import log2_quantize as fast
from llmref.accel.numba_cuda import log2_quantize as cuda
from llmref.ref import log2_quantize as ref
from llmref.ref._quant import slice_layout

RNG = np.random.default_rng(20261124)
F32 = np.float32
LOG2 = [ref.log2_quantize, fast.log2_quantize, cuda.log2_quantize]

# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("impl", LOG2)
@pytest.mark.parametrize("kwargs,name", [
    ({"bits": 1}, "bits"),
    ({"bits": 9}, "bits"),
    ({"granularity": "group"}, "granularity"),
    ({"granularity": "channel", "axis": 2}, "axis"),
])
def test_log2_rejects_bad_arguments(impl, kwargs, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(RNG.normal(size=(3, 8)), **kwargs)


@pytest.mark.parametrize("impl", LOG2)
def test_log2_rejects_nan_and_empty_input(impl):
    x = RNG.normal(size=(3, 8))
    x[0, 1] = np.nan
    with pytest.raises(InputError, match="^x:"):
        impl(x)
    with pytest.raises(InputError, match="^x:"):
        impl(np.zeros((0, 4)))


def test_backends_validate_through_the_reference_checker():
    """Every accelerated entry point calls log2_quantize_args before any kernel; none raises itself."""
    from pathlib import Path

    for module in (fast, cuda,):
        text = Path(module.__file__).read_text()
        assert "log2_quantize_args(" in text and "raise InputError" not in text, module.__name__


# ----------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 12)),
                  elements=st.floats(-1e3, 1e3, allow_nan=False)),
       st.integers(2, 8))
def test_log2_keeps_each_value_within_a_factor_sqrt2(x, bits):
    """The log-domain rounding bound: a kept value is within a factor sqrt(2) of x and has its
    sign; a flushed one lies below s 2^(e_min - 1/2); the slice maximum maps to s exactly."""
    codes, scale, x_hat = ref.log2_quantize(x, bits=bits)
    s = scale.item()
    kept = codes != 0
    ratio = x_hat[kept] / x[kept]
    assert np.all(ratio > 0)
    assert np.all(ratio <= np.sqrt(2) * (1 + 1e-15)) and np.all(ratio >= 1 / np.sqrt(2) * (1 - 1e-15))
    e_min = 1 - ref.log2_levels(bits)
    assert np.all(np.abs(x[~kept]) <= s * 2.0 ** (e_min - 0.5) * (1 + 1e-15))
    if np.any(x != 0):
        assert np.abs(x_hat).max() == s
    fast_codes, fast_scale, fast_hat = fast.log2_quantize(x, bits=bits)
    assert np.array_equal(fast_codes, codes) and np.array_equal(fast_scale, scale)
    assert np.array_equal(fast_hat, x_hat)


# ----------------------------------------------------------------------------- ties


def log2_through_log2f(x, bits=4, granularity="tensor", axis=0):
    """round(log2(|x| * (1/s))) with float32 log2: the log-domain rounding computed directly."""
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, 0)
    amax = np.abs(slices).max(axis=1)
    scale = np.where(amax == 0, F32(1), amax).astype(F32)
    levels = ref.log2_levels(bits)
    r = np.minimum(np.abs(slices) * (F32(1) / scale)[:, None], F32(1))
    with np.errstate(divide="ignore"):
        e = np.rint(np.log2(np.where(r > 0, r, F32(1)))).astype(np.int64)
    keep = (r > 0) & (e >= 1 - levels)
    codes = restore_codes(np.where(keep, np.where(slices < 0, -1, 1) * (e + levels), 0)).astype(np.int8)
    scale = restore_scale(scale)
    return codes, scale, ref.log2_dequantize(codes, scale, bits)


def test_log2_through_log2f_float32_passes():
    report, flips = audit_flips("log2_quantize", log2_through_log2f)
    assert report.passed, failures(report)
    print("log2 through log2f tie flips:", flips)


def test_ties_mark_only_elements_whose_alternative_differs():
    assert_masks_mark_only_differing_alternatives("log2_quantize")
