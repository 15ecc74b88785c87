"""The auditor survives anything the implementation under audit does: it runs in a spawned
worker with a per-case timeout, and exiting, hanging or crashing ends only that case."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import llmref
from llmref.compare import Outcome
from llmref.errors import InputError

IMPLS = textwrap.dedent('''
    import ctypes, os, sys, time
    from llmref.ref.softmax import softmax

    def exits(x, axis):
        sys.exit(0)

    def os_exits(x, axis):
        os._exit(0)

    def hangs(x, axis):
        time.sleep(600)

    def segfaults(x, axis):
        ctypes.string_at(0)

    def crashes_on_one_case(x, axis):
        if x.shape == (4, 37):  # random_rows
            os._exit(7)
        return softmax(x, axis)

    def chatty(x, axis):
        print("[red]not markup[/red] and not the report", flush=True)
        return softmax(x, axis)

    def raises_markup(x, axis):
        raise ValueError("bad [/x] input [bold]")

    def one_tuple(x, axis):
        return (softmax(x, axis),)

    not_callable = 3
''')


@pytest.fixture
def impl_dir(tmp_path):
    (tmp_path / "impls.py").write_text(IMPLS)
    (tmp_path / "broken_syntax.py").write_text("def f(:\n")
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('no import for you')\n")
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    return tmp_path


# The installed command, not `python -m llmref` (which would put the current directory first).
LLMREF = str(Path(sys.executable).with_name("llmref"))


def audit_cli(cwd, *args, component="softmax"):
    return subprocess.run([LLMREF, "audit", component, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("name,outcome,why", [
    ("exits", "CRASHED", "sys.exit(0)"),
    ("os_exits", "CRASHED", "exited with status 0"),
    ("segfaults", "CRASHED", "SIGSEGV"),
])
def test_exit_and_segfault_are_crashed_cases_and_a_failing_exit_code(impl_dir, name, outcome, why):
    result = audit_cli(impl_dir, f"impls:{name}", "--case", "random_rows", "--case", "peaked", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)["reports"][0]
    assert [c["outcome"] for c in report["cases"]] == [outcome, outcome]
    assert why in report["cases"][0]["detail"]
    assert report["isolation"] == "worker"


def test_a_hang_is_a_timeout_and_the_next_case_still_runs(impl_dir):
    result = audit_cli(impl_dir, "impls:hangs", "--case", "random_rows", "--case", "peaked",
                       "--timeout", "1.5", "--json")
    assert result.returncode == 1
    cases = json.loads(result.stdout)["reports"][0]["cases"]
    assert [c["outcome"] for c in cases] == ["TIMEOUT", "TIMEOUT"]


def test_the_worker_restarts_after_a_crash(impl_dir, tmp_path):
    junit = tmp_path / "report.xml"
    result = audit_cli(impl_dir, "impls:crashes_on_one_case", "--json", "--junit", str(junit))
    assert result.returncode == 1
    cases = {c["case"]: c["outcome"] for c in json.loads(result.stdout)["reports"][0]["cases"]}
    assert cases.pop("random_rows") == "CRASHED"
    assert set(cases.values()) == {"PASSED"}
    assert 'type="CRASHED"' in junit.read_text()


def test_prints_and_markup_in_messages_never_reach_the_report(impl_dir):
    result = audit_cli(impl_dir, "impls:chatty", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reports"][0]["passed"] is True  # stdout is only the JSON report
    result = audit_cli(impl_dir, "impls:raises_markup", "--case", "random_rows")
    assert result.returncode == 1
    assert "ValueError: bad [/x] input [bold]" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("target,reason", [
    ("broken_syntax:f", "SyntaxError"),
    ("raises_on_import:f", "no import for you"),
    ("exits_on_import:f", "SystemExit"),
    ("impls:not_callable", "is not callable"),
    ("impls:nothing_here", "AttributeError"),
    ("no_such_module:f", "ModuleNotFoundError"),
])
@pytest.mark.parametrize("mode", [(), ("--in-process",)])
def test_an_implementation_that_cannot_load_is_a_usage_error(impl_dir, target, reason, mode):
    result = audit_cli(impl_dir, target, *mode)
    assert result.returncode == 2, result.stdout + result.stderr
    assert reason in result.stderr and "MODULE:CALLABLE" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_current_directory_does_not_shadow_installed_packages(impl_dir):
    """A folder named like an installed package in the current directory is not imported in
    its place (cwd goes at the end of sys.path)."""
    (impl_dir / "numpy").mkdir()
    (impl_dir / "numpy" / "__init__.py").write_text("raise SystemExit('shadowed numpy')")
    result = audit_cli(impl_dir, "llmref.ref.softmax:softmax", "--json")
    assert result.returncode == 0, result.stderr
    result = audit_cli(impl_dir, "llmref.ref.softmax:softmax", "--in-process", "--json")
    assert result.returncode == 0, result.stderr


def test_components_are_looked_up_among_shipped_specs_only(impl_dir):
    (impl_dir / "x.yaml").write_text((llmref.spec.specs_dir() / "softmax.yaml").read_text())
    for name in ("../../x", str(impl_dir / "x"), "x", "softmax.yaml"):
        result = audit_cli(impl_dir, "impls:one_tuple", component=name)
        assert result.returncode == 2 and "no such component" in result.stderr, name


def test_a_users_own_spec_is_explicit_and_computed_live(impl_dir):
    spec = (llmref.spec.specs_dir() / "softmax.yaml").read_text()
    (impl_dir / "softmax.yaml").write_text(spec)
    result = audit_cli(impl_dir, "impls:one_tuple", "--spec", "softmax.yaml", "--json")
    assert result.returncode == 0, result.stderr
    other = audit_cli(impl_dir, "impls:one_tuple", "--spec", "softmax.yaml", component="relu")
    assert other.returncode == 2 and "--spec" in other.stderr


def test_python_api_runs_named_targets_in_a_worker(impl_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(impl_dir))
    monkeypatch.chdir(impl_dir)
    report = llmref.audit("softmax", "impls:exits", cases=["random_rows"])
    assert report.isolation == "worker"
    assert report.results[0].outcome is Outcome.CRASHED
    report = llmref.audit("softmax", "impls:one_tuple")  # one output returned as a 1-tuple
    assert report.passed, report.failures()
    with pytest.raises(InputError, match="MODULE:CALLABLE"):
        llmref.audit("softmax", "impls:nothing_here")


def test_in_process_survives_sys_exit():
    def exits(x, axis):
        raise SystemExit(3)

    result = llmref.audit("softmax", exits, cases=["random_rows"]).results[0]
    assert result.outcome is Outcome.CRASHED and "sys.exit(3)" in result.detail


def test_params_are_deep_copied_for_every_call():
    """An implementation that mutates a list param cannot change the case for later audits."""
    spec = llmref.load_spec("mixed_precision_plan")
    before = {c.id: json.dumps(c.params, sort_keys=True) for c in spec.cases}

    def vandal(**kwargs):
        for value in kwargs.values():
            if isinstance(value, list):
                value.clear()
        raise llmref.Unsupported("only here to mutate")

    llmref.audit(spec, vandal)
    assert {c.id: json.dumps(c.params, sort_keys=True) for c in spec.cases} == before
    assert all(r.outcome is Outcome.UNSUPPORTED for r in llmref.audit(spec, vandal).results)


def test_returned_arrays_that_are_not_numeric_are_a_dtype_mismatch(impl_dir):
    (impl_dir / "odd.py").write_text("import numpy as np\n"
                                     "def strings(x, axis):\n    return np.array(['a'] * x.size)\n"
                                     "def obj(x, axis):\n    return object()\n")
    for name in ("strings", "obj"):
        result = audit_cli(impl_dir, f"odd:{name}", "--case", "random_rows", "--json")
        assert json.loads(result.stdout)["reports"][0]["cases"][0]["outcome"] == "DTYPE_MISMATCH"


def test_full_tier_inputs_cross_the_worker_boundary(impl_dir):
    """A full-tier case (16 x 32000 logits) is fed through the pipe and judged."""
    result = audit_cli(impl_dir, "impls:one_tuple", "--case", "vocab_rows", "--json")
    assert result.returncode == 0, result.stderr
    assert np.isfinite(json.loads(result.stdout)["reports"][0]["cases"][0]["outputs"][0]["metrics"]["nmse"])
