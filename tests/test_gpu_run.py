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
    for name in ("pytest -m gpu", "llmref check (numba-cuda, cupy)", "bench w4a16_matmul (numba-cuda)",
                 "bench sample_tokens (numba-cuda)", "bench moe (numba-cuda)"):
        assert any(line.strip().startswith(name) and " ok " in line for line in summary.splitlines()), name
    for name in ("bench w4a16_matmul (cupy)", "bench paged_attention_decode (cupy)"):
        assert f"{name}: skipped, cupy needs a CUDA device" in result.stdout
    check = json.loads((tmp_path / "gpu_check.json").read_text())
    assert check, "llmref check wrote an empty report"
    for name in ("w4a16_matmul_numba_cuda_simulator.json", "sample_tokens_gpu_simulator.json",
                 "moe_gpu_simulator.json"):
        bench = json.loads((tmp_path / name).read_text())
        assert bench["device"] and bench["versions"]["numpy"], name
    assert json.loads((tmp_path / "w4a16_matmul_numba_cuda_simulator.json").read_text())["simulated"]
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
    """A bench script that times cupy or numba.cuda code is one of gpu_run.sh's steps (bench/_*.py
    are their shared helpers, not benchmarks)."""
    import re

    script = SCRIPT.read_text()
    gpu = re.compile(r"import cupy|from numba import cuda|numba\.cuda|llmref\.accel\.numba_cuda")
    benches = [p.name for p in sorted(SCRIPT.parent.glob("*.py"))
               if not p.name.startswith("_") and gpu.search(p.read_text())]
    assert benches, "no GPU benchmark found in bench/"
    assert [name for name in benches if f"bench/{name}" not in script] == []
