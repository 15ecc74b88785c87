"""Activations: bad input (on every backend, in a child process), properties, and cross-checks
against torch on the golden inputs."""
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import llmref
from llmref.backends import availability, implementation
from llmref.ref import activations as ref
from llmref.spec import load_spec, resolve

UNARY = ["relu", "gelu", "gelu_tanh", "silu", "glu"]
GATED = ["swiglu", "geglu"]
BACKENDS = ["ref", "numba-cpu", "numba-cuda"]


def impl(component, backend):
    spec = load_spec(component)
    return resolve(spec.ref) if backend == "ref" else implementation(spec, backend)


_PROBE = r"""
import pickle, sys
from llmref.errors import InputError
from llmref.spec import resolve
target, calls = pickle.load(sys.stdin.buffer)
fn = resolve(target)
for label, kwargs in calls:
    print("start", label, flush=True)
    try:
        fn(**kwargs)
    except InputError as exc:
        print("InputError", label, str(exc).split(":")[0], flush=True)
    except Exception as exc:
        print("other", label, type(exc).__name__, str(exc)[:200].replace(chr(10), " "), flush=True)
    else:
        print("returned", label, flush=True)
"""


def _probe(target, calls):
    """target(**kwargs) for every (label, kwargs) in a child process; {label: (outcome, detail)}.
    A kernel reached with a mismatched length reads or writes out of bounds and may kill the
    process: its exit code and the label it was running then say so, and the runner survives."""
    proc = subprocess.run([sys.executable, "-c", _PROBE], input=pickle.dumps((target, calls)),
                          capture_output=True, timeout=900)
    lines = [line.split(" ", 2) for line in proc.stdout.decode().splitlines()]
    started = [line[1] for line in lines if line[0] == "start"]
    assert proc.returncode == 0, (f"{target} exited with {proc.returncode} during "
                                  f"{started[-1] if started else '?'}: {proc.stderr.decode()[-2000:]}")
    return {line[1]: (line[0], line[2] if len(line) > 2 else "") for line in lines if line[0] != "start"}


def _target(component, backend):
    spec = load_spec(component)
    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
        return spec.accel[backend]["impl"]
    return spec.ref


BAD_X = [("nan", np.array([[1.0, np.nan]])), ("inf", np.array([[1.0, np.inf]])),
         ("integer_dtype", np.array([[1, 2]])), ("object", np.array([[None, 1.0]]))]
BAD = {
    **{name: [(label, {"x": x}, "x") for label, x in BAD_X] for name in UNARY},
    "glu": [(label, {"x": x}, "x") for label, x in BAD_X]
    + [("odd_last_axis", {"x": np.ones((2, 5))}, "x"), ("scalar", {"x": np.float64(1.0)}, "x")],
    **{name: [("shapes_differ", {"gate": np.ones((2, 4)), "up": np.ones((2, 5))}, "up"),
              ("up_shorter", {"gate": np.ones((2, 4)), "up": np.ones((2, 3))}, "up"),
              ("up_broadcastable", {"gate": np.ones((2, 4)), "up": np.ones(4)}, "up"),
              ("dtypes_differ", {"gate": np.ones((2, 4)), "up": np.ones((2, 4), np.float32)}, "up"),
              ("gate_nan", {"gate": np.array([[np.nan, 1.0]]), "up": np.ones((1, 2))}, "gate"),
              ("gate_scalar", {"gate": np.float64(1.0), "up": np.float64(1.0)}, "gate"),
              ("up_integer", {"gate": np.ones((1, 2)), "up": np.array([[1, 2]])}, "up")] for name in GATED},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("component", UNARY + GATED)
def test_bad_input_names_the_argument(component, backend):
    """Every backend checks through the reference's <name>_args before a kernel runs."""
    results = _probe(_target(component, backend), [(label, kwargs) for label, kwargs, _ in BAD[component]])
    wrong = {label: results.get(label) for label, _, name in BAD[component]
             if results.get(label) != ("InputError", name)}
    assert not wrong, wrong


def test_published_gelu_vectors():
    """Research notes sec. 7.1 (from torch): exact and tanh GELU at +-1 and +-3, 8 digits."""
    x = np.array([1.0, -1.0, 3.0, -3.0])
    np.testing.assert_allclose(ref.gelu(x), [0.84134475, -0.15865525, 2.99595031, -0.00404969],
                               atol=5e-9)
    np.testing.assert_allclose(ref.gelu_tanh(x), [0.84119199, -0.15880801, 2.99636261, -0.00363739],
                               atol=5e-9)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.integers(1, 20), elements=st.floats(-50, 50)))
def test_gelu_is_x_times_gaussian_cdf_and_relu_bounds_it(x):
    """gelu(x) = x Phi(x) lies between min(x, 0) and relu(x); silu likewise (sigmoid in (0, 1)).

    Phi via erfc has no cancellation for x < 0, where 1 + erf loses digits: the absolute error
    allowed is a few roundings of |x|."""
    y = ref.gelu(x)
    phi = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    atol = 4 * np.finfo(np.float64).eps * max(1.0, np.abs(x).max())
    np.testing.assert_allclose(y, x * phi, rtol=1e-12, atol=atol)
    for fn in (ref.gelu, ref.gelu_tanh, ref.silu):
        out = fn(x)
        assert np.all(out <= ref.relu(x) + 1e-12) and np.all(out >= np.minimum(x, 0) - 1e-12)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 8)), elements=st.floats(-20, 20)),
       arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 8)), elements=st.floats(-20, 20)))
def test_glu_equals_swiglu_form_on_halves(a, b):
    """glu([a | a]) = a * sigmoid(a) = silu(a), and swiglu(g, 1) = silu(g)."""
    np.testing.assert_allclose(ref.glu(np.concatenate([a, a], axis=-1)), ref.silu(a), rtol=1e-15)
    np.testing.assert_array_equal(ref.swiglu(b, np.ones_like(b)), ref.silu(b))


# --- cross-checks against torch: a correct alternative implementation passes the goldens ---

def _torch():
    return pytest.importorskip("torch", reason="torch is the independent implementation cross-checked")


def _unary_torch(component):
    torch = _torch()
    F = torch.nn.functional
    fns = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
           "silu": F.silu, "glu": lambda t: F.glu(t, dim=-1)}
    return lambda x: fns[component](torch.from_numpy(x)).numpy()


def _gated_torch(component):
    torch = _torch()
    F = torch.nn.functional
    act = F.silu if component == "swiglu" else (lambda t: F.gelu(t, approximate="tanh"))
    return lambda gate, up: (act(torch.from_numpy(gate)) * torch.from_numpy(up)).numpy()


@pytest.mark.crosscheck
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("component", UNARY + GATED)
def test_torch_passes_the_goldens(component, dtype):
    fn = _unary_torch(component) if component in UNARY else _gated_torch(component)
    report = llmref.audit(component, fn, dtype=dtype, label=f"torch {component}")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]


@pytest.mark.crosscheck
def test_torch_exact_gelu_fails_the_tanh_spec():
    """The two GELUs are distinguishable at float32: torch's exact GELU fails gelu_tanh."""
    torch = _torch()
    fn = lambda x: torch.nn.functional.gelu(torch.from_numpy(x)).numpy()  # noqa: E731
    assert not llmref.audit("gelu_tanh", fn, dtype="float32").passed
