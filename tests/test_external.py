"""Any language: a C softmax audited through --exec passes, a wrong one fails, and a program
that crashes or hangs is CRASHED / TIMEOUT (protocol: specs/FORMAT.md)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).parent / "external" / "softmax.c"
LLMREF = str(Path(sys.executable).with_name("llmref"))


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler on this machine")
    exe = tmp_path_factory.mktemp("c") / "softmax"
    subprocess.run([cc, "-O2", "-o", str(exe), str(SOURCE), "-lm"], check=True)
    return exe


def audit(command, *args):
    result = subprocess.run([LLMREF, "audit", "softmax", "--exec", command, "--json", *args],
                            capture_output=True, text=True, timeout=300)
    return result.returncode, json.loads(result.stdout)["reports"][0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_c_softmax_passes(program, dtype):
    code, report = audit(f"{program} {{inputs}} {{outputs}}", "--dtype", dtype)
    assert code == 0, report
    counts = report["counts"]
    assert counts["PASSED"] >= 8 and set(counts) <= {"PASSED", "UNSUPPORTED"}
    unsupported = [c for c in report["cases"] if c["outcome"] == "UNSUPPORTED"]
    assert [c["case"] for c in unsupported] == ["axis_zero_3d"]
    assert unsupported[0]["detail"] == "only the last axis"  # exit 77: stderr is the reason


def test_the_wrong_c_softmax_fails_and_is_diagnosed(program):
    code, report = audit(f"{program} {{inputs}} {{outputs}} nomax")
    assert code == 1
    failed = {c["case"]: c for c in report["cases"] if c["outcome"] not in ("PASSED", "UNSUPPORTED")}
    assert {"large_logits", "very_negative_logits"} <= set(failed)
    assert "no_max_subtraction" in failed["large_logits"]["diagnosis"]["matches"]
    assert "--exec" in failed["large_logits"]["repro"]


def test_a_crashing_or_hanging_program_is_crashed_or_timeout(program):
    code, report = audit(f"{program} {{inputs}} {{outputs}} crash", "--case", "random_rows")
    assert code == 1 and report["cases"][0]["outcome"] == "CRASHED"
    assert "SIGSEGV" in report["cases"][0]["detail"]
    code, report = audit(f"{program} {{inputs}} {{outputs}} hang", "--case", "random_rows", "--timeout", "1")
    assert code == 1 and report["cases"][0]["outcome"] == "TIMEOUT"


def test_paths_are_appended_when_the_command_names_neither(program):
    code, report = audit(str(program), "--case", "random_rows")
    assert code == 0, report


def test_a_missing_program_is_a_runtime_error_not_a_traceback():
    code, report = audit("/no/such/program", "--case", "random_rows")
    assert code == 1 and report["cases"][0]["outcome"] == "RUNTIME_ERROR"
    assert "cannot run" in report["cases"][0]["detail"]
