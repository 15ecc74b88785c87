"""Parallel sweeps report exactly what a serial run does, in the same order, on processes
and on a local Dask cluster."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import llmref
from llmref.check import run_check
from llmref.errors import InputError

LLMREF = str(Path(sys.executable).with_name("llmref"))


def _audit_cases(tmp_path, *args):
    out = tmp_path / f"{abs(hash(args))}.json"
    result = subprocess.run([LLMREF, "audit", "log_softmax", "llmref.ref.wrong.softmax:log_of_softmax",
                             "--tier", "full", "--json", str(out), *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr  # the wrong variant fails some cases
    return json.loads(out.read_text())["reports"][0]["cases"]


def test_jobs_give_the_serial_results_in_the_serial_order(tmp_path):
    serial = _audit_cases(tmp_path)
    assert _audit_cases(tmp_path, "--jobs", "2") == serial
    assert [c["case"] for c in serial] == [c.id for c in llmref.load_spec("log_softmax").cases]


def test_a_dask_cluster_gives_the_serial_results(tmp_path):
    pytest.importorskip("dask.distributed", reason="dask is the optional 'dask' extra (in the test extra)")
    serial = _audit_cases(tmp_path)
    assert _audit_cases(tmp_path, "--jobs", "2", "--executor", "dask") == serial


def test_parallel_check_cells_equal_serial_ones():
    kwargs = dict(components=["softmax", "relu"], backends=["numba-cpu"])
    serial = [(c.component, c.backend, c.dtype, c.status, c.note) for c in run_check(**kwargs)]
    parallel = [(c.component, c.backend, c.dtype, c.status, c.note) for c in run_check(**kwargs, jobs=2)]
    assert parallel == serial and len(serial) == 8


def test_bad_parallel_arguments_are_named_errors(tmp_path):
    with pytest.raises(InputError, match="jobs"):
        llmref.audit("softmax", llmref.ref.softmax.softmax, jobs=2)
    result = subprocess.run([LLMREF, "audit", "softmax", "llmref.ref.softmax:softmax", "--jobs", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--jobs" in result.stderr
    result = subprocess.run([LLMREF, "check", "--component", "relu", "--jobs", "-1"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--jobs" in result.stderr
