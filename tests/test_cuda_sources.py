"""Every CUDA C source compiles for Hopper (sm_90) without warnings, shares common.cuh, and no
kernel spills registers.

CuPy compiles these at run time with NVRTC on a GPU machine; compiling them here with nvcc
catches syntax and type errors on machines without a GPU, and ptxas's resource report
(-Xptxas -v) shows each kernel's registers and spills. Every kernel compiled is one the host
code launches (each template instantiation is a named extern "C" kernel), so all of them
must run without spilling. Run with -s to see the register table."""
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest

import llmref.accel.cupy as cupy_backend
from llmref.accel.cupy._module import HEADERS, compile_options

FOLDER = Path(cupy_backend.__file__).parent
SOURCES = sorted(FOLDER.glob("*.cu"))
ARCH = "sm_90"
TOOLKIT_HEADERS = re.compile(r'^\s*#\s*include\s*[<"](cuda_fp16|cuda_bf16|cuda_runtime|cuda)\b', re.M)


def _nvcc():
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found on PATH (install the CUDA toolkit to compile-check .cu files)")
    return nvcc


def _nvcc_run(source, *args):
    result = subprocess.run([_nvcc(), f"-arch={ARCH}", "-std=c++17", f"-I{FOLDER}", *args, str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr
    return result.stderr


@lru_cache(maxsize=None)
def ptx_entries(source: Path) -> frozenset:
    """The kernels (.entry) of the source's sm_90 PTX: every extern "C" kernel it instantiates."""
    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / f"{source.stem}.ptx"
        _nvcc_run(source, "--ptx", "-o", str(ptx))
        text = ptx.read_text()
    return frozenset(re.findall(r"^\.(?:visible|weak) \.entry (\w+)\(", text, flags=re.M))


def ptxas_report(source: Path) -> dict:
    """{kernel: (registers, spill store bytes, spill load bytes, stack frame bytes)} from
    ptxas -v on the sm_90 cubin."""
    log = _nvcc_run(source, "--cubin", "-Xptxas", "-v", "-o", "/dev/null")
    report, current = {}, None
    for line in log.splitlines():
        entry = re.search(r"Compiling entry function '(\w+)'", line)
        if entry:
            current = entry.group(1)
            continue
        frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if frame and current:
            stack, stores, loads = map(int, frame.groups())
            report[current] = [None, stores, loads, stack]
        used = re.search(r"Used (\d+) registers", line)
        if used and current:
            report.setdefault(current, [None, 0, 0, 0])[0] = int(used.group(1))
            current = None
    return {name: tuple(values) for name, values in report.items()}


def test_there_are_cuda_sources():
    assert SOURCES, "accel/cupy holds no .cu files"


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_cuda_source_compiles_with_nvcc(source):
    assert ptx_entries(source), f"{source.name} defines no kernel"


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_every_source_shares_common_cuh_and_needs_no_toolkit_header(source):
    """NVRTC on a machine with only pip packages has no cuda_fp16.h / cuda_bf16.h: the 16-bit
    types and their conversions come from common.cuh, once."""
    text = source.read_text()
    assert '#include "common.cuh"' in text
    assert not TOOLKIT_HEADERS.search(text), f"{source.name} includes a CUDA toolkit header"
    for helper in ("__half2float", "__float2half", "__bfloat162float", "__float2bfloat16", "float_to_bf16"):
        assert helper not in text, f"{source.name} converts on its own ({helper}); use common.cuh"


def test_compile_options_name_the_header_folder():
    options = compile_options()
    assert f"-I{FOLDER}" in options and all((FOLDER / h).exists() for h in HEADERS)


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_no_kernel_spills_registers(source):
    report = ptxas_report(source)
    assert set(report) == ptx_entries(source), "the ptxas report was not read for every kernel"
    assert all(values[0] is not None for values in report.values()), report
    print(f"\n{source.name} ({ARCH}, ptxas -v):")
    for name, (registers, stores, loads, stack) in sorted(report.items()):
        print(f"  {name:28s} {registers:4d} registers  spill stores {stores} B  spill loads {loads} B"
              f"  stack {stack} B")
    spilled = {name: values for name, values in report.items() if values[1] or values[2]}
    assert not spilled, f"kernels that spill (registers, stores, loads, stack): {spilled}"


def _nvrtc():
    """cuda-python's NVRTC binding with a loadable libnvrtc, or a skip saying why not."""
    try:
        from cuda.bindings import nvrtc

        err = nvrtc.nvrtcVersion()[0]
    except Exception as exc:  # no cuda-python, or no libnvrtc to load
        pytest.skip(f"NVRTC is not loadable here ({type(exc).__name__}: {str(exc)[:80]})")
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    return nvrtc


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_cuda_source_compiles_with_nvrtc_alone(source):
    """As CuPy compiles it (_module.compile_options), with no CUDA toolkit include directory."""
    nvrtc = _nvrtc()
    err, prog = nvrtc.nvrtcCreateProgram(source.read_bytes(), source.name.encode(), 0, [], [])
    options = [o.encode() for o in compile_options()] + [b"--gpu-architecture=compute_90"]
    (result,) = nvrtc.nvrtcCompileProgram(prog, len(options), options)
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    nvrtc.nvrtcDestroyProgram(prog)
    assert result == nvrtc.nvrtcResult.NVRTC_SUCCESS, log.decode(errors="replace")
