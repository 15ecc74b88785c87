"""Guard regions around GPU output buffers (ggml's sentinel idea).

A kernel writes into the middle of a larger buffer whose head and tail hold a sentinel bit
pattern; if either changed after the kernel ran, it wrote out of bounds and we raise instead
of returning a plausible answer.
"""
import numpy as np

GUARD_ELEMENTS = 256
SENTINEL_BYTE = 0xA5  # 0xA5A5... is neither 0 nor a common float or int value


def guarded_host_buffer(n: int, dtype) -> np.ndarray:
    """A host buffer of n + 2*GUARD_ELEMENTS elements, filled with the sentinel bytes."""
    buf = np.empty(n + 2 * GUARD_ELEMENTS, dtype=dtype)
    buf.view(np.uint8)[:] = SENTINEL_BYTE
    return buf


def interior(buf, n: int):
    """The n-element region the kernel may write (works for NumPy, CuPy and numba arrays)."""
    return buf[GUARD_ELEMENTS:GUARD_ELEMENTS + n]


def check_guards(buf_host: np.ndarray, n: int, what: str):
    """Raise if any byte of the head or tail guard changed."""
    raw = buf_host.view(np.uint8)
    head = raw[:GUARD_ELEMENTS * buf_host.itemsize]
    tail = raw[(GUARD_ELEMENTS + n) * buf_host.itemsize:]
    for name, region in (("before", head), ("after", tail)):
        bad = np.flatnonzero(region != SENTINEL_BYTE)
        if bad.size:
            raise RuntimeError(f"{what}: out-of-bounds write {name} the output buffer "
                               f"({bad.size} guard bytes changed)")
