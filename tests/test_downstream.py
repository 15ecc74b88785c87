"""tests/downstream_project uses the pytest plugin exactly as a user would; its per-case
results are exactly those of `llmref audit` on the same implementation."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import llmref

PROJECT = Path(__file__).parent / "downstream_project"
sys.path.insert(0, str(PROJECT / "src"))
import demo_kernels  # noqa: E402


def _run_downstream(tmp_path, impl):
    junit = tmp_path / f"{impl}.xml"
    env = dict(os.environ, LLMREF_DEMO_IMPL=impl)
    env.pop("PYTEST_XDIST_WORKER", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             f"--junitxml={junit}"], cwd=PROJECT, env=env, capture_output=True,
                            text=True, timeout=600)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        verdict = "failed" if case.find("failure") is not None or case.find("error") is not None \
            else "skipped" if case.find("skipped") is not None else "passed"
        outcomes[case.get("name")] = verdict
    return result, outcomes


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The downstream suite run once with each implementation: {impl: (result, outcomes)}."""
    tmp = tmp_path_factory.mktemp("downstream")
    return {impl: _run_downstream(tmp, impl) for impl in ("correct", "wrong")}


@pytest.mark.parametrize("impl,fn", [("correct", demo_kernels.softmax),
                                     ("wrong", demo_kernels.softmax_without_max)])
def test_downstream_results_equal_llmrefs_own_audit(runs, impl, fn):
    result, outcomes = runs[impl]
    report = llmref.audit("softmax", fn, dtype="float32")
    expected = {f"test_softmax[{r.case}[float32]]": "passed" if r.outcome.value == "PASSED" else "failed"
                for r in report.results}
    got = {name: v for name, v in outcomes.items() if name.startswith("test_softmax[")}
    assert got == expected
    assert (result.returncode == 0) == report.passed, result.stdout[-2000:]
    if impl == "wrong":
        assert "llmref softmax/large_logits at float32: NAN_INF_MISMATCH" in result.stdout


def test_the_fixture_form_and_skips(runs):
    _, outcomes = runs["correct"]
    rmsnorm = {k: v for k, v in outcomes.items() if k.startswith("test_rmsnorm_with_the_fixture[")}
    spec = llmref.load_spec("rmsnorm")
    assert set(rmsnorm) == {f"test_rmsnorm_with_the_fixture[{c.id}[float16]]" for c in spec.cases
                            if c.tier == "smoke"}
    assert set(rmsnorm.values()) == {"passed"}


def test_xfail_lists_are_honoured_strictly(runs):
    _, outcomes = runs["correct"]
    mine = {k: v for k, v in outcomes.items() if k.startswith("test_log_softmax_known_limitation[")}
    report = llmref.audit("log_softmax", demo_kernels.log_softmax_via_log, dtype="float32")
    failing = {r.case for r in report.failures()}
    assert failing == {"wide_range"}  # the audit agrees this is the one case it fails
    assert mine.pop("test_log_softmax_known_limitation[wide_range[float32]]") == "skipped"  # xfailed
    assert set(mine.values()) == {"passed"}
