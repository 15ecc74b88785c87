"""What every numba-cuda launch shares: the block size, the simulator policy, and output
buffers with guard regions (llmref.accel._guard) that are checked after the kernel.

    out = Guarded((rows, n), np.float32, "numba-cuda softmax")
    kernel[grid(rows), THREADS](cuda.to_device(x), out.device)
    y = out.result()      # copied back, guards checked, (rows, n)
"""
import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.backends import simulated

# The CUDA simulator runs every GPU thread as a Python thread: small blocks keep it quick.
THREADS = 32 if simulated() else 128


def grid(n_threads: int, threads: int = THREADS) -> int:
    """Blocks for at least `n_threads` threads (at least one block)."""
    return max(1, -(-int(n_threads) // threads))


class Guarded:
    """A device output of `shape` inside a buffer with sentinel head and tail regions."""

    def __init__(self, shape, dtype, what: str):
        self.shape, self.what = tuple(shape), what
        self.n = int(np.prod(self.shape, dtype=np.int64))
        self.buffer = cuda.to_device(guarded_host_buffer(self.n, dtype))
        self.device = interior(self.buffer, self.n).reshape(self.shape)

    def result(self) -> np.ndarray:
        host = self.buffer.copy_to_host()
        check_guards(host, self.n, self.what)
        return interior(host, self.n).reshape(self.shape).copy()
