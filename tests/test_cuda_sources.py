"""Every CUDA C source compiles with nvcc for Hopper (sm_90) without warnings.

CuPy compiles these at run time with NVRTC on a GPU machine; compiling them here with nvcc
catches syntax and type errors on machines without a GPU."""
import shutil
import subprocess
from pathlib import Path

import pytest

import llmref.accel.cupy as cupy_backend

SOURCES = sorted(Path(cupy_backend.__file__).parent.glob("*.cu"))


def test_there_are_cuda_sources():
    assert SOURCES, "accel/cupy holds no .cu files"


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_cuda_source_compiles_with_nvcc(source, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found on PATH (install the CUDA toolkit to compile-check .cu files)")
    result = subprocess.run(
        [nvcc, "-arch=sm_90", "-std=c++17", "--ptx", "-o", str(tmp_path / "out.ptx"), str(source)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr
