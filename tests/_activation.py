"""What the activation tests (test_relu, test_gelu, test_silu, test_glu) share: the bad-input
check on every backend, in a child process, and the torch cross-check on the goldens."""
import numpy as np
import pytest

import llmref
from llmref.backends import availability
from llmref.spec import load_spec

BACKENDS = ["ref", "numba-cpu", "numba-cuda"]

# (label, kwargs, the argument the InputError must name) that every elementwise activation rejects
BAD_X = [(label, {"x": x}, "x") for label, x in (
    ("nan", np.array([[1.0, np.nan]])), ("inf", np.array([[1.0, np.inf]])),
    ("integer_dtype", np.array([[1, 2]])), ("object", np.array([[None, 1.0]])))]


def assert_bad_input_names_the_argument(probe, component, backend, table):
    """Every backend checks through the reference's <name>_args before a kernel runs."""
    spec = load_spec(component)
    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
    results = probe(spec.ref if backend == "ref" else spec.accel[backend]["impl"],
                    [(label, kwargs) for label, kwargs, _ in table])
    wrong = {label: results.get(label) for label, _, name in table if results.get(label) != ("InputError", name)}
    assert not wrong, wrong


def torch():
    return pytest.importorskip("torch", reason="torch is the independent implementation cross-checked")


def assert_torch_passes_the_goldens(component, fn, dtype):
    """A correct alternative implementation passes the goldens."""
    report = llmref.audit(component, fn, dtype=dtype, label=f"torch {component}")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]
