"""llmref.accel.numba_cpu._threads: a loop takes numba's threads only with work enough, and
its two builds never share compiled code."""
import subprocess
import sys

import numba
import pytest

from llmref.accel.numba_cpu import _threads

# A module of its own, run in fresh processes that share one cache directory: each build's
# machine code must come back from the cache as the build it was compiled as.
KERNEL = """
import numba
import numpy as np
from llmref.accel.numba_cpu._threads import threaded_loop

@threaded_loop()
def thread_ids(out):
    for i in numba.prange(out.shape[0]):
        out[i] = numba.get_thread_id()

def threads_used(work):
    numba.get_num_threads()  # starts the thread pool, which get_thread_id reads even serially
    out = np.zeros(64, np.int64)
    thread_ids(work, out)
    return len(set(out.tolist()))
"""

needs_two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                       reason="numba has one thread here: the threaded build is never taken")


def _threads_used(tmp_path, work):
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import kernel; print(kernel.threads_used({work}))"
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])


@needs_two_threads
def test_work_below_the_grain_stays_on_one_thread_and_above_it_takes_both(tmp_path):
    (tmp_path / "kernel.py").write_text(KERNEL)
    assert _threads_used(tmp_path, _threads.GRAIN - 1) == 1
    assert _threads_used(tmp_path, _threads.GRAIN) == 2


@needs_two_threads
def test_a_cached_serial_build_is_not_loaded_as_the_threaded_one(tmp_path):
    """numba keys its cache by function name and signature, not by parallel=True: the serial
    build cached first, a fresh process asking for the threaded one must compile its own."""
    (tmp_path / "kernel.py").write_text(KERNEL)
    assert _threads_used(tmp_path, 1) == 1  # the serial build, now cached
    assert _threads_used(tmp_path, _threads.GRAIN) == 2
    assert _threads_used(tmp_path, 1) == 1  # and the other way round
