"""Load a CUDA C source beside this file as a CuPy RawModule (compiled once per process)."""
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def raw_module(filename: str):
    import cupy

    source = (Path(__file__).parent / filename).read_text()
    return cupy.RawModule(code=source, options=("-std=c++17",))
