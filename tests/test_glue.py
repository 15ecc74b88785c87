"""The glue itself: spec schema, seeds, golden store integrity, comparison outcomes, audit
convention, CLI exit codes."""
import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import llmref
from llmref.cases import case_seed, make_inputs
from llmref.compare import Outcome
from llmref.errors import GoldenError, InputError, SpecError
from llmref.paths import golden_dir, specs_dir
from llmref.ref.softmax import log_softmax, softmax
from llmref.spec import load_spec, parse_spec_file
from llmref.store import load_case, verify
from llmref.tolerance import UNIT_ROUNDOFF, tolerance_for


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "llmref", *args], capture_output=True, text=True,
                          timeout=600)


# --- spec schema -------------------------------------------------------------------------

def _write_spec(tmp_path, mutate):
    import yaml

    data = yaml.safe_load((specs_dir() / "softmax.yaml").read_text())
    mutate(data)
    path = tmp_path / "softmax.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.pop("tolerance"), "tolerance"),
    (lambda d: d.update(version="one"), "version"),
    (lambda d: d["inputs"][0].update(dtype="float128"), "inputs[0].dtype"),
    (lambda d: d["cases"][0]["inputs"].update(y={"dist": "normal"}), "cases[random_rows].inputs.y"),
    (lambda d: d["cases"][0].update(tier="nightly"), "cases[random_rows].tier"),
    (lambda d: d["wrong_variants"][0].update(catches=["no_such_case"]), "wrong_variants[0].catches"),
    (lambda d: d.update(accel={"opencl": "a.b:c"}), "accel.opencl"),
    (lambda d: d["tolerance"].pop("reason"), "tolerance.reason"),
    (lambda d: d["tolerance"].update(ulps=True), "tolerance.ulps"),
    (lambda d: d["tolerance"].update(ulps=-5), "tolerance.ulps"),
    (lambda d: d["tolerance"].update(ulps=float("inf")), "tolerance.ulps"),
    (lambda d: d["tolerance"].update(ulps="4"), "tolerance.ulps"),
    (lambda d: d["tolerance"].update(overrides={"bfloat16": {"ulps": 0, "reason": "r"}}),
     "tolerance.overrides.bfloat16.ulps"),
    (lambda d: d["tolerance"].update(overrides={"bfloat16": {"ulps": 2}}), "tolerance.overrides.bfloat16"),
    (lambda d: d["tolerance"].update(reduction="M"), "cases[random_rows].dims"),
    (lambda d: d["tolerance"].update(slack=2), "tolerance.slack"),
    (lambda d: d["tolerance"].update(exact=True), "tolerance.ulps"),
    (lambda d: d.update(ref="llmref.ref.no_such_module:softmax"), "ref"),
    (lambda d: d.update(ref="llmref.ref.softmax:no_such_function"), "ref"),
    (lambda d: d.update(ref="softmax"), "ref"),
    (lambda d: d["wrong_variants"][0].update(impl="llmref.ref.wrong.softmax:nothing"), "wrong_variants[0].impl"),
    (lambda d: d["cases"][0]["dims"].update(Q=3), "cases[random_rows].dims.Q"),
    (lambda d: d["cases"][0]["dims"].pop("N"), "cases[random_rows].inputs.x"),
    (lambda d: d["cases"][0]["inputs"]["x"].update(dist="cauchy"), "cases[random_rows].inputs.x.dist"),
    (lambda d: d["cases"][0]["inputs"]["x"].update(sigma=2), "cases[random_rows].inputs.x.sigma"),
    (lambda d: d["cases"][0]["inputs"]["x"].update(special={"pos_inf": 0.1}),
     "cases[random_rows].inputs.x.special.pos_inf"),
    (lambda d: d["cases"][0]["inputs"]["x"].update(special={"neg_inf": 1.5}),
     "cases[random_rows].inputs.x.special.neg_inf"),
    (lambda d: d["cases"][0].update(params={"axis": "last"}), "cases[random_rows].params.axis"),
    (lambda d: d["cases"][0].update(params={"axis": True}), "cases[random_rows].params.axis"),
    (lambda d: d["cases"][0].update(comment="stray key"), "cases[0].comment"),
    (lambda d: d["params"][0].update(default=1.5), "params[0].default"),
    (lambda d: d["params"][0].update(choices=[0, 1]), "params[0].default"),
    (lambda d: d["inputs"][0].update(shape="B, N"), "inputs[0].shape"),
    (lambda d: d.update(dtypes=["float32"]), "dtypes"),
    (lambda d: d.update(conventions=[{"a": "b"}]), "conventions"),
])
def test_malformed_spec_names_file_and_field(tmp_path, mutate, field):
    path = _write_spec(tmp_path, mutate)
    with pytest.raises(SpecError) as info:
        parse_spec_file(path)
    assert str(info.value).startswith(f"softmax.yaml: {field}:"), str(info.value)


def test_every_shipped_spec_passes_the_schema_and_its_functions_import():
    for path in specs_dir().glob("*.yaml"):
        assert parse_spec_file(path).id == path.stem


def test_a_parsed_spec_is_read_back_from_its_json_copy_only_when_that_is_exact(tmp_path, monkeypatch):
    import yaml

    from llmref import spec as spec_module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    text = (specs_dir() / "softmax.yaml").read_text(encoding="utf-8")
    first = spec_module._read_yaml(text)
    (copy,) = (tmp_path / "llmref" / "specs").glob("*.json")
    assert first == yaml.safe_load(text) and json.loads(copy.read_text()) == first
    copy.write_text(json.dumps({"read": "from the copy"}))
    assert spec_module._read_yaml(text) == {"read": "from the copy"}  # the copy is what is read
    copy.write_text("{not json")
    assert spec_module._read_yaml(text) == first  # a damaged copy is parsed again, and rewritten
    assert json.loads(copy.read_text()) == first
    odd = "1: integer key\nx: .nan\n"  # JSON would give "1" and a NaN unequal to itself
    assert spec_module._read_yaml(odd).keys() == {1, "x"}
    assert len(list(copy.parent.glob("*.json"))) == 1  # not kept


def test_show_prints_spec_text_verbatim(capsys):
    """Brackets in a spec are text, not markup: every line of every definition, convention
    and tolerance reason appears as written."""
    from llmref.cli import main

    for spec in llmref.spec.all_specs():
        assert main(["show", spec.id]) == 0
        shown = capsys.readouterr().out
        for line in spec.definition.splitlines() + [f"  - {c}" for c in spec.conventions]:
            assert line.rstrip() in shown, (spec.id, line)
        assert spec.tolerance["reason"] in shown
    assert main(["show", "rope"]) == 0
    assert "(x[i], x[i + r/2])" in capsys.readouterr().out


def test_unknown_component_is_a_spec_error():
    with pytest.raises(SpecError, match="no such component"):
        load_spec("softmaxx")


# --- seeds and inputs ------------------------------------------------------------------

def test_seed_is_sha256_of_component_and_case_not_python_hash():
    digest = hashlib.sha256(b"softmax/random_rows").digest()
    assert case_seed("softmax", "random_rows") == int.from_bytes(digest[:8], "little")
    code = "from llmref.cases import case_seed; print(case_seed('softmax', 'random_rows'))"
    seeds = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONHASHSEED": str(h), "PATH": ""}).stdout for h in (1, 2)}
    assert len(seeds) == 1


def test_inputs_are_deterministic_and_special_values_are_placed():
    spec = load_spec("softmax")
    case = spec.case("masked_neg_inf")
    a, b = make_inputs(spec, case), make_inputs(spec, case)
    assert np.array_equal(a["x"], b["x"])
    assert np.isneginf(a["x"]).sum() == round(0.3 * a["x"].size)


# --- golden store ------------------------------------------------------------------------

@pytest.fixture
def golden_copy(tmp_path):
    root = tmp_path / "golden"
    shutil.copytree(golden_dir(), root)
    return root


def test_verify_cli_passes_on_committed_goldens():
    result = run_cli("golden", "verify")
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_cli_names_a_tampered_file(golden_copy):
    target = golden_copy / "softmax" / "large_logits.safetensors"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x01
    target.write_bytes(bytes(data))
    result = run_cli("golden", "verify", "--root", str(golden_copy))
    assert result.returncode == 1
    assert "softmax/large_logits.safetensors" in result.stdout
    assert "SHA-256" in result.stdout


def test_verify_cli_names_a_deleted_file(golden_copy):
    (golden_copy / "log_softmax" / "wide_range.safetensors").unlink()
    result = run_cli("golden", "verify", "--root", str(golden_copy))
    assert result.returncode == 1
    assert "log_softmax/wide_range.safetensors: missing" in result.stdout


def test_verify_reports_extra_and_stale(golden_copy):
    (golden_copy / "softmax" / "stray.safetensors").write_bytes(b"x")
    manifest = json.loads((golden_copy / "MANIFEST.json").read_text())
    manifest["components"]["log_softmax"]["spec_version"] = 0
    (golden_copy / "MANIFEST.json").write_text(json.dumps(manifest))
    problems = dict(verify(["softmax", "log_softmax"], golden_copy))
    assert "extra file" in problems["softmax/stray.safetensors"]
    assert "regenerate" in problems["log_softmax"]


def test_loading_a_tampered_golden_raises(monkeypatch, golden_copy):
    target = golden_copy / "softmax" / "random_rows.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    monkeypatch.setattr("llmref.store.golden_dir", lambda: golden_copy)
    spec = load_spec("softmax")
    with pytest.raises(GoldenError, match="softmax/random_rows.safetensors"):
        load_case(spec, spec.case("random_rows"))


def test_lower_precision_goldens_use_rounded_inputs():
    spec = load_spec("softmax")
    case = spec.case("random_rows")
    at16 = load_case(spec, case, "float16")
    at64 = load_case(spec, case, "float64")
    assert at16.inputs["x"].dtype == np.float16
    assert np.array_equal(at16.inputs["x"], at64.inputs["x"].astype(np.float16))
    # float64 exp may differ by an ulp between CPUs (SVML on AVX-512), hence not bit-equality
    np.testing.assert_allclose(at16.expected["y"], softmax(at16.inputs["x"].astype(np.float64)),
                               rtol=4 * np.finfo(np.float64).eps)
    assert not np.array_equal(at64.expected["y"], at16.expected["y"])


# --- tolerance and comparison ------------------------------------------------------------

def test_tolerance_follows_unit_roundoff_and_reduction_length():
    """rtol = ulps * max(u(d), sqrt(n) * u(accumulation dtype)): the reduction grows in the
    precision it is summed in (float32 for the half formats), the rest in the dtype itself."""
    spec = load_spec("softmax")
    case = spec.case("random_rows")  # N = 37
    ulps = spec.tolerance["ulps"]
    for dtype, u in UNIT_ROUNDOFF.items():
        tol = tolerance_for(spec, case, dtype)
        accumulate = UNIT_ROUNDOFF["float64" if dtype == "float64" else "float32"]
        assert tol.rtol == pytest.approx(ulps * max(u, np.sqrt(37) * accumulate))
        assert tol.nmse == pytest.approx(tol.rtol ** 2)
    assert tolerance_for(spec, case, "float32").rtol == pytest.approx(ulps * np.sqrt(37) * 2.0 ** -24)
    assert tolerance_for(spec, case, "bfloat16").rtol == pytest.approx(ulps * 2.0 ** -8)


def _audit(fn, **kw):
    return llmref.audit("softmax", fn, cases=["random_rows"], **kw).results[0]


def test_outcomes_of_broken_implementations():
    assert _audit(softmax).outcome is Outcome.PASSED
    assert _audit(lambda x, axis: softmax(x, axis)[:, :-1]).outcome is Outcome.SHAPE_MISMATCH
    assert _audit(lambda x, axis: softmax(x, axis).astype(np.float64)).outcome is Outcome.DTYPE_MISMATCH
    assert _audit(lambda x, axis: np.full_like(x, np.nan)).outcome is Outcome.NAN_INF_MISMATCH
    assert _audit(lambda x, axis: softmax(x, axis) * 1.001).outcome is Outcome.NUMERICAL_MISMATCH

    def raises(x, axis):
        raise ValueError("boom")

    def unsupported(x, axis):
        raise llmref.Unsupported("no float32 path")

    assert _audit(raises).outcome is Outcome.RUNTIME_ERROR
    assert _audit(unsupported).outcome is Outcome.UNSUPPORTED


def test_failure_reports_metrics_worst_index_and_repro():
    def off_by_one_element(x, axis):
        y = softmax(x, axis)
        y[2, 5] += 0.01
        return y

    result = _audit(off_by_one_element)
    assert result.outcome is Outcome.NUMERICAL_MISMATCH
    metrics = result.comparisons[0].metrics
    assert metrics["worst_index"] == (2, 5)
    assert metrics["max_abs_err"] == pytest.approx(0.01, rel=1e-3)
    assert metrics["nmse"] > 0 and metrics["cosine"] < 1
    assert "--case random_rows --dtype float32" in result.repro


def test_outputs_may_be_tuple_or_dict_and_inputs_are_not_mutated():
    spec = load_spec("softmax")
    before = load_case(spec, spec.case("random_rows"), "float32").inputs["x"].copy()

    def mutating(x, axis):
        y = softmax(x, axis)
        x[:] = 0
        return {"y": y}

    assert _audit(mutating).outcome is Outcome.PASSED
    assert np.array_equal(load_case(spec, spec.case("random_rows"), "float32").inputs["x"], before)


def test_audit_rejects_unknown_case_and_dtype():
    with pytest.raises(InputError, match="cases"):
        llmref.audit("softmax", softmax, cases=["nope"])
    with pytest.raises(InputError, match="dtype"):
        llmref.audit("softmax", softmax, dtype="float8")


# --- bad input at the public API --------------------------------------------------------

@pytest.mark.parametrize("fn", [softmax, log_softmax])
def test_softmax_bad_input_names_the_argument(fn):
    with pytest.raises(InputError, match="^x: expected a floating-point array"):
        fn(np.arange(4))
    with pytest.raises(InputError, match="^x: contains NaN"):
        fn(np.array([0.0, np.nan]))
    with pytest.raises(InputError, match=r"^x: contains \+inf"):
        fn(np.array([0.0, np.inf]))
    with pytest.raises(InputError, match="^axis: axis 2 is out of range"):
        fn(np.zeros((2, 3)), axis=2)
    with pytest.raises(InputError, match="^x: expected at least 1 dimensions"):
        fn(np.float64(1.0))


# --- CLI -------------------------------------------------------------------------------

def test_cli_exit_codes_and_json():
    ok = run_cli("audit", "softmax", "llmref.ref.softmax:softmax", "--json")
    assert ok.returncode == 0, ok.stderr
    document = json.loads(ok.stdout)
    assert document["schema"] == "llmref-report/1" and document["summary"]["passed"] is True
    assert document["reports"][0]["passed"] is True
    bad = run_cli("audit", "softmax", "llmref.ref.wrong.softmax:softmax_without_max_subtraction")
    assert bad.returncode == 1
    assert "reproduce: llmref audit softmax" in bad.stdout
    assert run_cli("audit", "nosuch", "llmref.ref.softmax:softmax").returncode == 2
    assert run_cli("audit", "softmax", "no.such.module:fn").returncode == 2
    assert run_cli("check", "--component", "nosuch").returncode == 2
    assert run_cli("frobnicate").returncode == 2


def test_check_json_has_a_cell_per_backend():
    result = run_cli("check", "--component", "softmax", "--backend", "numba-cpu",
                     "--backend", "cupy", "--json")
    assert result.returncode == 0, result.stdout[-2000:]
    cells = json.loads(result.stdout)["cells"]
    cpu = [c for c in cells if c["backend"] == "numba-cpu"]
    assert {c["dtype"] for c in cpu} == {"float64", "float32", "float16", "bfloat16"}
    assert all(c["status"] == "pass" for c in cpu)
    cupy_cells = [c for c in cells if c["backend"] == "cupy"]
    assert cupy_cells and all(c["status"] in ("pass", "unavailable") for c in cupy_cells)
    for c in cupy_cells:
        if c["status"] == "unavailable":
            assert c["note"]  # says why


def test_selftest_cli_rejects_every_wrong_variant():
    result = run_cli("selftest", "--component", "softmax", "--component", "log_softmax")
    assert result.returncode == 0, result.stdout
    variants = [line for line in result.stdout.splitlines()
                if line.startswith(("softmax / ", "log_softmax / "))]
    assert len(variants) == 3 and all(": rejected (" in line for line in variants), result.stdout
    assert result.stdout.count("trivial mutants") == 8  # 2 components x 4 dtypes


def test_audit_writes_junit_with_one_failure_per_failing_case(tmp_path):
    import xml.etree.ElementTree as ET

    path = tmp_path / "audit.xml"
    result = run_cli("audit", "softmax", "llmref.ref.wrong.softmax:softmax_without_max_subtraction",
                     "--junit", str(path))
    assert result.returncode == 1
    suite = ET.parse(path).getroot().find("testsuite")
    failures = suite.findall("testcase/failure")
    assert int(suite.get("failures")) == len(failures) > 0
    assert all(f.get("type") == "NAN_INF_MISMATCH" for f in failures)
