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
    serial = [(c.component, c.backend, c.dtype, c.status, c.note) for c in run_check(**kwargs)[0]]
    parallel = [(c.component, c.backend, c.dtype, c.status, c.note) for c in run_check(**kwargs, jobs=2)[0]]
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


def _thread_settings(_task):
    import os

    from llmref.parallel import THREAD_VARIABLES
    return {name: os.environ.get(name) for name in THREAD_VARIABLES}


def test_each_worker_gets_its_share_of_the_cores_and_the_caller_keeps_its_environment(monkeypatch):
    import os

    from llmref.parallel import THREAD_VARIABLES, run_tasks

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # set by the user: left alone
    (seen,) = set(tuple(sorted(s.items())) for s in run_tasks(_thread_settings, [{}] * 4, jobs=2))
    share = str(max(1, os.cpu_count() // 2))
    assert dict(seen) == {"NUMBA_NUM_THREADS": share, "OMP_NUM_THREADS": share,
                          "OPENBLAS_NUM_THREADS": share, "MKL_NUM_THREADS": "3"}
    assert [os.environ.get(n) for n in THREAD_VARIABLES] == [None, None, None, "3"]


def test_a_check_of_several_components_defaults_to_a_process_per_core():
    import os

    from llmref.check import MAX_DEFAULT_JOBS, default_jobs

    cores = min(os.cpu_count(), MAX_DEFAULT_JOBS)
    assert (default_jobs(), default_jobs(["softmax", "relu"]), default_jobs(["softmax"])) == (cores, cores, 1)
    result = subprocess.run([LLMREF, "check", "--component", "relu", "--backend", "numba-cpu"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "(--jobs 1, process)" in result.stdout, result.stdout + result.stderr
