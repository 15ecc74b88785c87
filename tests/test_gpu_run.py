"""bench/gpu_run.sh: its CPU rehearsal runs every step (numba.cuda in the CUDA simulator, cupy
skipped with the reason, tiny shapes) and leaves results with device and versions; the real
run stops at once, saying why, where there is no GPU."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_run.sh"


def _run(args, out, timeout):
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("PYTEST_XDIST_WORKER", None)
    start = time.perf_counter()
    result = subprocess.run(["bash", str(SCRIPT), *args, "--out", str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    return result, time.perf_counter() - start


def _gpu_present():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def test_rehearsal_runs_every_step_on_the_cpu(tmp_path):
    result, seconds = _run(["--rehearse"], tmp_path, timeout=300)
    print(result.stdout[-3000:], f"\nrehearsal wall time: {seconds:.1f} s")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.rsplit("finished in", 1)[1]
    for name in ("pytest -m gpu", "llmref check (numba-cuda, cupy)", "llmref bench (cupy, numba-cuda)"):
        assert any(line.strip().startswith(name) and " ok " in line for line in summary.splitlines()), name
    check = json.loads((tmp_path / "gpu_check.json").read_text())
    assert check, "llmref check wrote an empty report"
    bench = json.loads((tmp_path / "bench_gpu_simulator.json").read_text())
    assert bench["tiny"] and bench["machine"]["versions"]["numpy"] and bench["machine"]["backends"]
    rows = bench["rows"]
    cuda = [r for r in rows if r["implementation"] == "numba-cuda"]
    assert cuda and all("simulator" in r["skipped"] for r in cuda)  # the simulator times nothing
    assert all(r["skipped"] for r in rows if r["implementation"] == "cupy")
    assert not [r for r in rows if r["implementation"] == "numba-cpu"]  # only the GPU backends
    assert all("median_s" in r for r in rows if r["implementation"] == "reference")
    assert (tmp_path / "gpu_pytest.xml").exists()


def test_real_run_stops_at_once_without_a_gpu(tmp_path):
    if _gpu_present():
        pytest.skip("a GPU is present: bench/gpu_run.sh would run for real")
    result, seconds = _run([], tmp_path, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no CUDA GPU found" in result.stderr and "--rehearse" in result.stderr
    assert "== " not in result.stdout  # no step started
    assert list(tmp_path.iterdir()) == []
    assert seconds < 60


def test_every_gpu_benchmark_is_run():
    """The GPU benchmarks are `llmref bench`'s cupy and numba-cuda rows (bench/<family>.py are
    thin wrappers of it), which gpu_run.sh runs; a bench script with GPU code of its own must
    be one of its steps too (bench/_*.py are their shared helpers, not benchmarks)."""
    import re

    script = SCRIPT.read_text()
    assert re.search(r"-m llmref bench --backend cupy \\?\s*--backend numba-cuda", script)
    gpu = re.compile(r"import cupy|from numba import cuda|numba\.cuda|llmref\.accel\.numba_cuda")
    benches = [p.name for p in sorted(SCRIPT.parent.glob("*.py"))
               if not p.name.startswith("_") and gpu.search(p.read_text())]
    assert [name for name in benches if f"bench/{name}" not in script] == []
