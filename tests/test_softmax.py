"""Softmax / log-softmax: properties of the reference and agreement with torch."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import llmref
from llmref.ref.softmax import log_softmax, softmax

rows = arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 40)),
              elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None)
@given(rows, st.floats(-1e3, 1e3))
def test_softmax_is_a_distribution_and_shift_invariant(x, shift):
    y = softmax(x)
    assert np.all(y >= 0)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(softmax(x + shift), y, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(rows)
def test_log_softmax_is_log_of_softmax_where_that_is_finite(x):
    y, logy = softmax(x), log_softmax(x)
    assert np.all(logy <= 0)
    finite = y > 1e-300
    np.testing.assert_allclose(np.exp(logy), y, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(logy[finite], np.log(y[finite]), rtol=1e-9, atol=1e-12)


def _torch():
    return pytest.importorskip("torch", reason="torch is in the crosscheck extra")


@pytest.mark.crosscheck
@pytest.mark.parametrize("component", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_torch_passes_the_audit(component, dtype):
    torch = _torch()
    fn = torch.softmax if component == "softmax" else torch.log_softmax

    def torch_impl(x, axis):
        return fn(torch.from_numpy(x), dim=axis).numpy()

    report = llmref.audit(component, torch_impl, dtype=dtype)
    assert report.passed, [(r.case, r.detail) for r in report.failures()]


@pytest.mark.parametrize("component", ["softmax", "log_softmax"])
@pytest.mark.parametrize("backend", ["ref", "numba-cpu", "numba-cuda", "cupy"])
def test_empty_input_gives_an_empty_result_on_every_backend(component, backend):
    """An axis of length 0 has nothing to normalise (torch.softmax returns an empty tensor);
    the cupy host code returns before it needs cupy or a GPU."""
    from llmref.backends import availability, implementation
    from llmref.spec import load_spec, resolve

    spec = load_spec(component)
    if backend in ("numba-cpu", "numba-cuda"):
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
    fn = resolve(spec.ref) if backend == "ref" else implementation(spec, backend)
    for shape, axis in (((3, 0), -1), ((0, 5), -1), ((2, 0, 4), 1), ((0,), 0)):
        y = fn(x=np.zeros(shape, np.float32), axis=axis)
        assert y.shape == shape and y.dtype == np.float32, (shape, axis)


@pytest.mark.parametrize("component", ["softmax", "log_softmax"])
@pytest.mark.parametrize("backend", ["ref", "numba-cpu", "numba-cuda", "cupy"])
def test_bad_input_names_the_argument_on_every_backend(component, backend):
    """Every backend checks through the reference's softmax_args / log_softmax_args first (the
    cupy host code before it imports cupy)."""
    from llmref.backends import availability, implementation
    from llmref.spec import load_spec, resolve

    spec = load_spec(component)
    if backend in ("numba-cpu", "numba-cuda"):
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
    fn = resolve(spec.ref) if backend == "ref" else implementation(spec, backend)
    for x, axis, name in ((np.array([[1.0, np.nan]], np.float32), -1, "x"),
                          (np.array([[1.0, np.inf]], np.float32), -1, "x"),
                          (np.array([[1, 2]]), -1, "x"),
                          (np.float32(1.0), -1, "x"),
                          (np.ones((2, 3), np.float32), 2, "axis"),
                          (np.ones((2, 3), np.float32), 1.0, "axis")):
        with pytest.raises(llmref.InputError, match=f"^{name}:"):
            fn(x=x, axis=axis)


@pytest.mark.parametrize("component", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_numba_cpu_finds_nan_and_inf_anywhere_in_its_max_pass(component, dtype):
    """numba-cpu reads x's values only in its row-max pass: a NaN of either sign or a +inf at
    any place of a long row (vector bodies, tails, past a CHUNK) is the error naming x that
    softmax_args gives, while -inf, the least valid value, is not."""
    from llmref.backends import availability, implementation
    from llmref.dtypes import numpy_dtype
    from llmref.spec import load_spec, resolve

    ok, why = availability("numba-cpu")
    if not ok:
        pytest.skip(f"numba-cpu unavailable: {why}")
    spec = load_spec(component)
    fn, ref = implementation(spec, "numba-cpu"), resolve(spec.ref)
    x = np.linspace(-3.0, 3.0, 3 * 1031).reshape(3, 1031).astype(numpy_dtype(dtype))
    x[1, ::7] = -np.inf
    np.testing.assert_allclose(fn(x=x, axis=-1).astype(np.float64),  # the float64 reference
                               ref(x=x.astype(np.float64), axis=-1), rtol=1e-2, atol=1e-6)
    negative_nan = -np.abs(np.float64(np.nan))
    for value in (np.nan, negative_nan, np.inf):
        for row, column in ((0, 0), (1, 513), (2, 1030)):
            bad = x.copy()
            bad[row, column] = value
            with pytest.raises(llmref.InputError, match="^x:"):
                fn(x=bad, axis=-1)
