"""Properties of the glue at its boundaries, with generated inputs (hypothesis): malformed
specs, manifests and files are named errors, never tracebacks; the comparison is exact for
integers, symmetric where it should be and monotone in the tolerance; any byte flip in a
golden is detected."""
import copy
import json
import shutil

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llmref.compare import Outcome, compare
from llmref.errors import GoldenError, SpecError
from llmref.paths import golden_dir, specs_dir
from llmref.spec import parse_spec
from llmref.store import MANIFEST, read_manifest, verify
from llmref.tensorfile import TensorFileError, dumps, loads
from llmref.tolerance import Tolerance

SOFTMAX = yaml.safe_load((specs_dir() / "softmax.yaml").read_text())
JUNK = st.recursive(st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=True)
                    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _paths(node, prefix=()):
    """Every (path) into a nested dict/list, to pick a place to damage."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


SPEC_PATHS = [p for p in _paths(SOFTMAX) if p]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SPEC_PATHS), JUNK, st.booleans())
def test_a_damaged_spec_is_a_spec_error_or_a_valid_spec(path, junk, delete):
    data = copy.deepcopy(SOFTMAX)
    node = data
    for key in path[:-1]:
        node = node[key]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = junk
    try:
        parse_spec(data, specs_dir() / "softmax.yaml")
    except SpecError as exc:
        assert str(exc).startswith("softmax.yaml: ")
        assert "(structure)" not in str(exc), str(exc)  # every damage meets a field check


@pytest.fixture(scope="module")
def manifest_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    shutil.copytree(golden_dir() / "softmax", root / "softmax")
    shutil.copy(golden_dir() / MANIFEST, root / MANIFEST)
    return root


MANIFEST_DATA = json.loads((golden_dir() / MANIFEST).read_text())
MANIFEST_PATHS = [p for p in _paths({"components": {"softmax": MANIFEST_DATA["components"]["softmax"]},
                                     "format_version": 2}) if p]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(MANIFEST_PATHS), JUNK)
def test_a_damaged_manifest_is_a_named_problem(manifest_root, path, junk):
    data = {"format_version": 2, "generator_version": MANIFEST_DATA["generator_version"],
            "components": {"softmax": copy.deepcopy(MANIFEST_DATA["components"]["softmax"])}}
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = junk
    (manifest_root / MANIFEST).write_text(json.dumps(data))
    try:
        read_manifest(manifest_root)
    except GoldenError as exc:
        assert str(exc).startswith(MANIFEST)
    problems = verify(["softmax"], manifest_root)
    assert all(isinstance(rel, str) and isinstance(why, str) for rel, why in problems)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_reader(data):
    try:
        loads(data, "x.safetensors")
    except TensorFileError as exc:
        assert str(exc).startswith("x.safetensors: ")


GOLDEN = (golden_dir() / "softmax" / "random_rows.safetensors").read_bytes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, len(GOLDEN) - 1), st.integers(1, 255))
def test_any_byte_flip_in_a_golden_is_detected(tmp_path_factory, offset, mask):
    root = tmp_path_factory.mktemp("flip")
    shutil.copytree(golden_dir() / "softmax", root / "softmax")
    shutil.copy(golden_dir() / MANIFEST, root / MANIFEST)
    data = bytearray(GOLDEN)
    data[offset] ^= mask
    (root / "softmax" / "random_rows.safetensors").write_bytes(bytes(data))
    problems = dict(verify(["softmax"], root))
    assert "softmax/random_rows.safetensors" in problems
    try:
        loads(bytes(data), "x")  # and the reader either parses it or names the damage
    except TensorFileError:
        pass


INTS = st.lists(st.integers(-5, 5), min_size=1, max_size=12)


@given(INTS, INTS)
def test_integers_compare_exactly_and_symmetrically(a, b):
    assume(len(a) == len(b))
    a, b = np.array(a), np.array(b)
    tol = Tolerance(rtol=0.1, reason="")
    forward = compare("q", a, b, "int64", "float32", tol).outcome
    backward = compare("q", b, a, "int64", "float32", tol).outcome
    assert forward == backward
    assert (forward is Outcome.PASSED) == bool(np.array_equal(a, b))


FLOATS = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=16)


@given(FLOATS, st.lists(st.floats(-1e-2, 1e-2, allow_nan=False), min_size=16, max_size=16),
       st.floats(1e-8, 1e-2), st.floats(1.0, 100.0))
def test_float_comparison_is_monotone_in_the_tolerance(expected, noise, rtol, widen):
    e = np.array(expected)
    a = (e + np.array(noise[:e.size]) * (1 + np.abs(e))).astype(np.float32)
    tight = compare("y", a, e, "float", "float32", Tolerance(rtol=rtol, reason="")).outcome
    loose = compare("y", a, e, "float", "float32", Tolerance(rtol=min(rtol * widen, 0.125), reason="")).outcome
    assert not (tight is Outcome.PASSED and loose is not Outcome.PASSED)


@given(FLOATS)
def test_the_exact_answer_always_passes_and_zeros_never_do(expected):
    e = np.array(expected)
    assume(np.abs(e).max() > 0)
    tol = Tolerance(rtol=2 ** -8 * 4, reason="")
    assert compare("y", e.astype(np.float32), e.astype(np.float32).astype(np.float64), "float",
                   "float32", tol).outcome is Outcome.PASSED
    assert compare("y", np.zeros(e.shape, np.float32), e, "float", "float32", tol).outcome \
        is Outcome.NUMERICAL_MISMATCH


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.sampled_from(
    [np.float32, np.float64, np.int64, np.uint8, np.bool_]), min_size=1, max_size=4), st.integers(0, 5))
def test_written_files_read_back_identically(names, n):
    tensors = {k: np.arange(n).astype(dtype) for k, dtype in names.items()}
    back, meta = loads(dumps(tensors, {"m": "v"}))
    assert meta == {"m": "v"} and back.keys() == tensors.keys()
    for k in tensors:
        assert back[k].dtype == tensors[k].dtype and np.array_equal(back[k], tensors[k])
