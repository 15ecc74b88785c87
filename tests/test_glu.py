"""GLU, SwiGLU and GeGLU: bad input (on every backend, in a child process), properties, and
cross-checks against torch on the golden inputs."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from _activation import (BACKENDS, BAD_X, assert_bad_input_names_the_argument,
                         assert_torch_passes_the_goldens, torch)
from llmref.ref.glu import glu, swiglu
from llmref.ref.silu import silu

GATED = ["swiglu", "geglu"]
BAD = {
    "glu": BAD_X + [("odd_last_axis", {"x": np.ones((2, 5))}, "x"), ("scalar", {"x": np.float64(1.0)}, "x")],
    **{name: [("shapes_differ", {"gate": np.ones((2, 4)), "up": np.ones((2, 5))}, "up"),
              ("up_shorter", {"gate": np.ones((2, 4)), "up": np.ones((2, 3))}, "up"),
              ("up_broadcastable", {"gate": np.ones((2, 4)), "up": np.ones(4)}, "up"),
              ("dtypes_differ", {"gate": np.ones((2, 4)), "up": np.ones((2, 4), np.float32)}, "up"),
              ("gate_nan", {"gate": np.array([[np.nan, 1.0]]), "up": np.ones((1, 2))}, "gate"),
              ("gate_scalar", {"gate": np.float64(1.0), "up": np.float64(1.0)}, "gate"),
              ("up_integer", {"gate": np.ones((1, 2)), "up": np.array([[1, 2]])}, "up")] for name in GATED},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("component", list(BAD))
def test_bad_input_names_the_argument(component, backend, probe):
    assert_bad_input_names_the_argument(probe, component, backend, BAD[component])


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 8)), elements=st.floats(-20, 20)),
       arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 8)), elements=st.floats(-20, 20)))
def test_glu_equals_swiglu_form_on_halves(a, b):
    """glu([a | a]) = a * sigmoid(a) = silu(a), and swiglu(g, 1) = silu(g)."""
    np.testing.assert_allclose(glu(np.concatenate([a, a], axis=-1)), silu(a), rtol=1e-15)
    np.testing.assert_array_equal(swiglu(b, np.ones_like(b)), silu(b))


def _torch_glu(x):
    return torch().nn.functional.glu(torch().from_numpy(x), dim=-1).numpy()


def _torch_gated(component):
    F = torch().nn.functional
    act = F.silu if component == "swiglu" else (lambda t: F.gelu(t, approximate="tanh"))
    return lambda gate, up: (act(torch().from_numpy(gate)) * torch().from_numpy(up)).numpy()


@pytest.mark.crosscheck
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("component", ["glu"] + GATED)
def test_torch_passes_the_goldens(component, dtype):
    assert_torch_passes_the_goldens(component, _torch_glu if component == "glu" else _torch_gated(component),
                                    dtype)
