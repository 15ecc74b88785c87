"""Accelerated backends: which are available here (and why not), and their implementations.

A spec's `accel:` section maps a backend name to 'module:function'; nothing else registers
anything, so adding a kernel means adding one line to its spec.
"""
import ctypes.util
import os
from functools import lru_cache
from importlib import metadata

from llmref.spec import BACKENDS, Spec, resolve


@lru_cache(maxsize=None)
def availability(backend: str) -> tuple:
    """(available, note): note is the device or mode when available, the reason when not."""
    if backend == "numba-cpu":
        # Asked of the installed distribution, not by importing numba (0.6 s): the parent of a
        # parallel check plans the cells and never runs a kernel. A numba that is installed
        # but cannot be imported fails every cell with the import error.
        try:
            return True, f"numba {metadata.version('numba')}"
        except metadata.PackageNotFoundError:
            return False, "numba not installed"
    if backend == "numba-cuda":
        if not simulated() and not _cuda_driver_present():
            return False, "no CUDA driver (set NUMBA_ENABLE_CUDASIM=1 for the simulator)"
        try:
            from numba import cuda
        except ImportError as exc:
            return False, f"numba-cuda not installed ({exc})"
        if simulated():
            return True, "CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
        if not cuda.is_available():
            return False, "no CUDA device (set NUMBA_ENABLE_CUDASIM=1 for the simulator)"
        name = cuda.get_current_device().name
        return True, name.decode() if isinstance(name, bytes) else str(name)
    if backend == "cupy":
        try:
            import cupy
        except ImportError:
            return False, "cupy not installed (pip install llmref[cuda13])"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError without a driver
            return False, f"no CUDA device ({type(exc).__name__})"
        if count == 0:
            return False, "no CUDA device"
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return True, name.decode() if isinstance(name, bytes) else str(name)
    raise KeyError(f"unknown backend {backend!r} (known: {BACKENDS})")


def _cuda_driver_present() -> bool:
    """Whether a CUDA driver may be here: a device node (Linux, WSL), libcuda on the loader's
    path, or NUMBA_CUDA_DRIVER naming one. Asked before importing numba.cuda, which takes 1-2 s
    of every check on a machine without a GPU only to find none."""
    if os.environ.get("NUMBA_CUDA_DRIVER") or any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/dxg")):
        return True
    return ctypes.util.find_library("cuda") is not None or ctypes.util.find_library("nvcuda") is not None


def simulated() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


def implementation(spec: Spec, backend: str):
    return resolve(spec.accel[backend]["impl"], f"{spec.id}.yaml: accel.{backend}.impl")
