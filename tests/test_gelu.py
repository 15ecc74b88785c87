"""The exact and the tanh GELU: bad input (on every backend, in a child process), published
vectors, properties, and cross-checks against torch on the golden inputs."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from _activation import (BACKENDS, BAD_X, assert_bad_input_names_the_argument,
                         assert_torch_passes_the_goldens, torch)
import llmref
from llmref.ref.gelu import gelu, gelu_tanh
from llmref.ref.relu import relu
from llmref.ref.silu import silu


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("component", ["gelu", "gelu_tanh"])
def test_bad_input_names_the_argument(component, backend, probe):
    assert_bad_input_names_the_argument(probe, component, backend, BAD_X)


def test_published_gelu_vectors():
    """Research notes sec. 7.1 (from torch): exact and tanh GELU at +-1 and +-3, 8 digits."""
    x = np.array([1.0, -1.0, 3.0, -3.0])
    np.testing.assert_allclose(gelu(x), [0.84134475, -0.15865525, 2.99595031, -0.00404969], atol=5e-9)
    np.testing.assert_allclose(gelu_tanh(x), [0.84119199, -0.15880801, 2.99636261, -0.00363739],
                               atol=5e-9)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.integers(1, 20), elements=st.floats(-50, 50)))
def test_gelu_is_x_times_gaussian_cdf_and_relu_bounds_it(x):
    """gelu(x) = x Phi(x) lies between min(x, 0) and relu(x); silu likewise (sigmoid in (0, 1)).

    Phi via erfc has no cancellation for x < 0, where 1 + erf loses digits: the absolute error
    allowed is a few roundings of |x|."""
    y = gelu(x)
    phi = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    atol = 4 * np.finfo(np.float64).eps * max(1.0, np.abs(x).max())
    np.testing.assert_allclose(y, x * phi, rtol=1e-12, atol=atol)
    for fn in (gelu, gelu_tanh, silu):
        out = fn(x)
        assert np.all(out <= relu(x) + 1e-12) and np.all(out >= np.minimum(x, 0) - 1e-12)


@pytest.mark.crosscheck
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("component", ["gelu", "gelu_tanh"])
def test_torch_passes_the_goldens(component, dtype):
    approximate = "tanh" if component == "gelu_tanh" else "none"
    fn = lambda x: torch().nn.functional.gelu(torch().from_numpy(x), approximate=approximate).numpy()  # noqa: E731
    assert_torch_passes_the_goldens(component, fn, dtype)


@pytest.mark.crosscheck
def test_torch_exact_gelu_fails_the_tanh_spec():
    """The two GELUs are distinguishable at float32: torch's exact GELU fails gelu_tanh."""
    fn = lambda x: torch().nn.functional.gelu(torch().from_numpy(x)).numpy()  # noqa: E731
    assert not llmref.audit("gelu_tanh", fn, dtype="float32").passed
