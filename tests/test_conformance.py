"""What every spec gets for free: schema, golden integrity and reproducibility, the reference
at lower precision, every available backend, and the discrimination self-test (wrong
variants and trivial mutants)."""
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import llmref
from llmref.accel.numba_cpu import _threads
from llmref.backends import availability, implementation
from llmref.cases import GENERATOR_VERSION, call_with
from llmref.check import backend_plan
from llmref.dtypes import is_float_dtype, round_to
from llmref.paths import golden_dir
from llmref.selftest import audit_variant, run_mutants
from llmref.spec import all_specs, load_spec, resolve
from llmref.store import case_file, read_manifest, verify
from llmref.tensorfile import loads
from llmref.tolerance import RTOL_CAP, tolerance_for

SPECS = all_specs()
IDS = [s.id for s in SPECS]


def test_every_spec_has_goldens_that_verify():
    assert verify() == []
    manifest = read_manifest()
    assert manifest["generator_version"] == GENERATOR_VERSION
    assert set(manifest["components"]) == set(IDS)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """Every golden generated twice, by two separate processes running at the same time."""
    roots = [tmp_path_factory.mktemp(f"golden{i}") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "llmref", "golden", "generate", "--out", str(r)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in roots]
    for p in procs:
        _, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr.decode()
    return roots


def test_two_processes_generate_identical_bytes(regenerated):
    a, b = regenerated
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(files) > len(IDS)
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs between processes"


@pytest.mark.parametrize("component", IDS)
def test_regeneration_reproduces_committed_goldens(component, regenerated):
    """Inputs (at every dtype), exact outputs and tie masks bit-identical; float outputs within
    the spec's float64 tolerance: vectorised libm and BLAS differ between CPUs by an ulp or
    so (on the machine that made them, the files are byte-identical)."""
    spec = load_spec(component)
    for case in (c for c in spec.cases if c.tier == "smoke"):
        rel = case_file(component, case.id)
        fresh, _ = loads((regenerated[0] / rel).read_bytes())
        committed, _ = loads((golden_dir() / rel).read_bytes())
        assert fresh.keys() == committed.keys(), rel
        tol = tolerance_for(spec, case, "float64")
        for key, new in fresh.items():
            old = committed[key]
            assert new.dtype == old.dtype and new.shape == old.shape, f"{rel}:{key}"
            if key.startswith(("input", "tie_mask")) or new.dtype.kind != "f":
                assert np.array_equal(new, old), f"{rel}:{key} is not bit-identical"
            else:
                # a float64 output's allowance: the spec's rtol and, where the spec has one,
                # the stored per-element conditioning bound of that output at float64
                name = key.split(".", 1)[1]
                bound = committed.get(f"bound.{name}", 0.0) if key.startswith("output.") else 0.0
                scale = np.nanmax(np.abs(np.where(np.isfinite(old), old, 0)), initial=0.0)
                np.testing.assert_allclose(new, old, rtol=tol.rtol, atol=tol.rtol * scale + np.max(bound, initial=0.0),
                                           err_msg=f"{rel}:{key}")


@pytest.mark.parametrize("component", IDS)
def test_every_bound_is_below_the_cap(component):
    """No case at any dtype, full tier included, derives a relative bound above RTOL_CAP
    (tolerance_for raises a SpecError naming the case if one does)."""
    spec = load_spec(component)
    for case in spec.cases:
        for dtype in spec.dtypes:
            assert tolerance_for(spec, case, dtype).rtol <= RTOL_CAP


def _evaluated_in(spec, compute: str, dtype: str):
    """The reference run in `compute` arithmetic on the inputs at `dtype`, its float outputs
    rounded once to `dtype`: the ideal implementation at that precision."""
    ref = resolve(spec.ref)
    kinds = {t.name: t.dtype for t in spec.outputs}

    def fn(**kwargs):
        wide = {k: v.astype(compute) if isinstance(v, np.ndarray) and is_float_dtype(v.dtype) else v
                for k, v in kwargs.items()}
        out = call_with(ref, list(kinds), wide, {})
        return {name: round_to(np.asarray(v, np.float64), dtype) if kinds[name] == "float" else v
                for name, v in out.items()}

    return fn


@pytest.mark.parametrize("component", IDS)
def test_reference_evaluated_at_lower_precision_passes(component):
    """The reference in float32 arithmetic (and float64 at float64) is a correct alternative:
    at float32 on float32 inputs, and at float16/bfloat16 on the half-precision inputs with the
    result rounded once, as the spec conventions describe. Each must pass its dtype's bound."""
    spec = load_spec(component)
    for dtype in spec.dtypes:
        compute = "float64" if dtype == "float64" else "float32"
        report = llmref.audit(spec, _evaluated_in(spec, compute, dtype), dtype=dtype)
        assert report.passed, (dtype, [(r.case, r.detail) for r in report.failures()])


@pytest.mark.parametrize("component", IDS)
def test_trivial_mutants_are_rejected_on_every_case(component):
    """All zeros, a constant, the first input passed through, a permutation of the answer and
    noise of its scale fail on every case at every dtype (smoke and full tier), while the
    correctly rounded answer passes."""
    checks = run_mutants(component, tier="full")
    assert checks
    escaped = [(c.case, c.dtype, c.output, c.mutant, c.outcome.value, c.detail[:200])
               for c in checks if not c.ok]
    assert not escaped, escaped


VARIANTS = [(s.id, v.id) for s in SPECS for v in s.wrong_variants]


@pytest.mark.parametrize("component,variant", VARIANTS, ids=[f"{c}-{v}" for c, v in VARIANTS])
def test_wrong_variant_is_rejected(component, variant):
    spec = load_spec(component)
    wrong = next(v for v in spec.wrong_variants if v.id == variant)
    report, caught = audit_variant(spec, wrong)
    assert not report.passed
    assert caught, f"{variant} passed the cases meant to catch it: {wrong.catches}"
    diagnosed = [r.case for r in report.failures() if r.diagnosis and variant in r.diagnosis["matches"]]
    assert diagnosed, f"no failing case diagnoses {variant}: {[r.diagnosis for r in report.failures()]}"


def _backend_params(*backends):
    return [pytest.param(s.id, b, id=f"{s.id}-{b}", marks=[pytest.mark.gpu] if b == "cupy" else [])
            for b in backends for s in SPECS if b in s.accel]


@pytest.mark.parametrize("component,backend", _backend_params("numba-cpu", "numba-cuda", "cupy"))
def test_backend_matches_goldens(component, backend):
    """Every dtype the backend declares; under the CUDA simulator, numba-cuda runs float32 on
    the small cases only (llmref.check.backend_plan: the policy `llmref check` follows)."""
    _assert_backend_matches_goldens(component, backend)


@pytest.mark.parametrize("component", [s.id for s in SPECS if "numba-cpu" in s.accel])
def test_numba_cpu_threaded_loops_match_goldens(component, monkeypatch):
    """The same with every threaded loop on numba's threads: a golden is too small for them
    (llmref.accel.numba_cpu._threads), so the test above and `llmref check` run the serial
    builds of the same source."""
    if numba.get_num_threads() < 2:
        pytest.skip("numba has one thread here: the threaded builds are never taken")
    monkeypatch.setattr(_threads, "GRAIN", 0)
    _assert_backend_matches_goldens(component, "numba-cpu")


def _assert_backend_matches_goldens(component, backend):
    ok, why = availability(backend)
    if not ok:
        pytest.skip(f"{backend} unavailable: {why}")
    spec = load_spec(component)
    fn = implementation(spec, backend)
    dtypes, cases = backend_plan(spec, backend)
    for dtype in dtypes:
        report = llmref.audit(spec, fn, cases=cases, dtype=dtype, label=backend)
        assert report.passed, (dtype, [(r.case, r.detail) for r in report.failures()])


def test_every_accelerated_target_resolves():
    """The spec schema checks their form; here every accel target is imported."""
    for spec in SPECS:
        for backend, entry in spec.accel.items():
            assert callable(resolve(entry["impl"], f"{spec.id}: accel.{backend}"))


def _param_perturbations(declared, value):
    """Values to substitute for a param: its other allowed choices and declared alternatives,
    else its neighbours (a flipped bool; nearby ints; scaled and shifted floats)."""
    listed = [v for v in (declared["choices"] or []) + (declared["alternatives"] or []) if v != value]
    if listed or declared["type"] in ("str", "list"):
        return listed
    if declared["type"] == "bool":
        return [not value]
    if declared["type"] == "int":
        candidates = [value + 1, value - 1, 2 * value, value + 7, 1, 0]
    else:
        candidates = [1.5 * value + 0.25, 0.5 * value, value + 1.0, value - 0.5]
    return [v for v in dict.fromkeys(candidates) if v != value]


def _outputs_equal(a: dict, b: dict) -> bool:
    for name, x in a.items():
        y = b[name]
        if isinstance(x, (str, bytes)):
            if x != y:
                return False
        elif np.shape(x) != np.shape(y) or not np.array_equal(
                np.asarray(x, np.float64), np.asarray(y, np.float64), equal_nan=True):
            return False
    return True


@pytest.mark.parametrize("component", IDS)
def test_every_param_changes_some_golden(component):
    """Each param, substituted on the smoke cases, changes at least one case's behaviour (its
    outputs, or whether the spec rejects it: an `expect: error` case) -- or is refused with
    InputError on every case (a param pinned by the inputs' shapes). A param no case
    exercises could be ignored by an implementation without any case noticing."""
    from llmref.cases import make_inputs, widen
    from llmref.errors import InputError

    spec = load_spec(component)
    ref, names = resolve(spec.ref), [t.name for t in spec.outputs]
    smoke = [c for c in spec.cases if c.tier == "smoke"]
    data = {c.id: widen(make_inputs(spec, c)) for c in smoke}

    def behaviour(case, params):
        """The outputs, or None where the reference rejects the inputs."""
        try:
            return call_with(ref, names, data[case.id], params)
        except InputError:
            return None

    unexercised = []
    for name, declared in spec.params.items():
        changed = refused = tried = 0
        for case in smoke:
            base = behaviour(case, case.params)
            for value in _param_perturbations(declared, case.params[name]):
                tried += 1
                out = behaviour(case, {**case.params, name: value})
                if out is None and base is not None:
                    refused += 1
                elif (out is None) != (base is None) or (out is not None and not _outputs_equal(base, out)):
                    changed += 1  # different outputs, or accepted where the default is an error
        if not changed and not (tried and refused == tried):
            unexercised.append(name)
    assert not unexercised, f"{component}: no case's output depends on {unexercised}"
