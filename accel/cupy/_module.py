"""Load a CUDA C source beside this file as a CuPy RawModule (compiled once per process).

The sources include common.cuh from this folder, so NVRTC gets it on its include path. CuPy
caches compiled binaries by source text and options, which say nothing of an included header:
the header's digest goes into the options, so editing common.cuh recompiles every source.
"""
import hashlib
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).parent
HEADERS = ("common.cuh",)


def compile_options() -> tuple:
    """NVRTC options: C++17, this folder on the include path, the headers' digest."""
    digest = hashlib.sha256(b"".join((HERE / h).read_bytes() for h in HEADERS)).hexdigest()[:16]
    return ("-std=c++17", f"-I{HERE}", f"-DLLMREF_HEADERS_DIGEST=0x{digest}")


@lru_cache(maxsize=None)
def raw_module(filename: str):
    import cupy

    source = (HERE / filename).read_text()
    return cupy.RawModule(code=source, options=compile_options())
