"""What every spec gets for free: schema, golden integrity, regeneration, the reference at
lower precision, every available backend, and the discrimination self-test."""
from pathlib import Path

import numpy as np
import pytest

import llmref
from llmref.backends import availability, implementation
from llmref.check import SIMULATOR_DTYPES, simulator_cases
from llmref.selftest import audit_variant
from llmref.spec import all_specs, load_spec, resolve
from llmref.store import GENERATOR_VERSION, generate, read_manifest, verify
from llmref.tolerance import tolerance_for

SPECS = all_specs()
IDS = [s.id for s in SPECS]


def test_every_spec_has_goldens_that_verify():
    assert verify(IDS) == []
    manifest = read_manifest()
    assert manifest["generator_version"] == GENERATOR_VERSION
    assert set(manifest["components"]) == set(IDS)


@pytest.mark.parametrize("component", IDS)
def test_regeneration_reproduces_committed_goldens(component, tmp_path):
    """Inputs and exact outputs bit-identical; float outputs within the spec's float64
    tolerance (a few ulps, widened only where the spec derives why): BLAS summation order and
    vectorised libm (SVML on AVX-512) differ between CPUs by an ulp or so."""
    from safetensors.numpy import load

    from llmref.paths import golden_dir

    spec = load_spec(component)
    for rel in generate([component], tmp_path):
        tol = tolerance_for(spec, spec.case(Path(rel).stem), "float64")
        fresh = load((tmp_path / rel).read_bytes())
        committed = load((golden_dir() / rel).read_bytes())
        assert fresh.keys() == committed.keys(), rel
        for key, new in fresh.items():
            old = committed[key]
            assert new.dtype == old.dtype and new.shape == old.shape, f"{rel}:{key}"
            if key.startswith("input.") or new.dtype.kind != "f":
                assert np.array_equal(new, old), f"{rel}:{key} is not bit-identical"
            else:
                scale = np.nanmax(np.abs(np.where(np.isfinite(old), old, 0)), initial=0.0)
                np.testing.assert_allclose(new, old, rtol=tol.rtol, atol=tol.atol_scale * scale,
                                           err_msg=f"{rel}:{key}")


@pytest.mark.parametrize("component", IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_reference_evaluated_at_dtype_passes(component, dtype):
    """The reference itself, run in float32 arithmetic on float32 inputs, is a correct
    alternative: it must pass at float32 tolerances (and trivially at float64)."""
    spec = load_spec(component)
    if dtype not in spec.dtypes:
        pytest.skip(f"{component} is not specified at {dtype}")
    report = llmref.audit(spec, resolve(spec.ref), dtype=dtype)
    assert report.passed, [(r.case, r.detail) for r in report.failures()]


VARIANTS = [(s.id, v.id) for s in SPECS for v in s.wrong_variants]


@pytest.mark.parametrize("component,variant", VARIANTS, ids=[f"{c}-{v}" for c, v in VARIANTS])
def test_wrong_variant_is_rejected(component, variant):
    spec = load_spec(component)
    wrong = next(v for v in spec.wrong_variants if v.id == variant)
    report, caught = audit_variant(spec, wrong)
    assert not report.passed
    assert caught, f"{variant} passed the cases meant to catch it: {wrong.catches}"


def _backend_params(*backends):
    return [pytest.param(s.id, b, id=f"{s.id}-{b}", marks=[pytest.mark.gpu] if b == "cupy" else [])
            for b in backends for s in SPECS if b in s.accel]


@pytest.mark.parametrize("component,backend", _backend_params("numba-cpu", "numba-cuda", "cupy"))
def test_backend_matches_goldens(component, backend):
    """Every dtype the backend declares; under the CUDA simulator, numba-cuda runs float32 on
    the small cases only (the kernels see float16/bfloat16 inputs widened to float32)."""
    from llmref.backends import simulated

    ok, why = availability(backend)
    if not ok:
        pytest.skip(f"{backend} unavailable: {why}")
    spec = load_spec(component)
    fn = implementation(spec, backend)
    dtypes, cases = spec.accel[backend]["dtypes"], None
    if backend == "numba-cuda" and simulated():
        dtypes = [d for d in dtypes if d in SIMULATOR_DTYPES]
        cases = simulator_cases(spec)
    for dtype in dtypes:
        report = llmref.audit(spec, fn, cases=cases, dtype=dtype, label=backend)
        assert report.passed, (dtype, [(r.case, r.detail) for r in report.failures()])
