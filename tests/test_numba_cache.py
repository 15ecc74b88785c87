"""A read-only install still caches its compiled kernels: where the package's own
__pycache__ cannot be written (site-packages owned by root), numba falls back to the user's
cache directory, and a second run loads from it instead of compiling.

The read-only folder is simulated by making numba's in-tree locator fail its write probe,
exactly as it fails on a read-only folder (a root user can write anywhere, so chmod would
prove nothing here)."""
import subprocess
import sys

RUN = """
import sys, time
import numba.core.caching as caching

def read_only(self):
    raise PermissionError(13, "read-only file system", self.get_cache_path())

caching.InTreeCacheLocator.ensure_cache_path = read_only
from llmref.cli import main
start = time.perf_counter()
# --jobs 1: the read-only patch lives in this process (a spawned worker would not have it)
code = main(["check", "--component", "softmax", "--component", "relu", "--component", "swiglu",
             "--backend", "numba-cpu", "--dtype", "float32", "--jobs", "1", "--json", "-"])
print("SECONDS", time.perf_counter() - start, file=sys.stderr)
sys.exit(code)
"""


def _check(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "NUMBA_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stderr.rsplit("SECONDS", 1)[1].split()[0])


def test_kernels_cache_in_the_user_cache_when_the_install_is_read_only(tmp_path):
    cold = _check(tmp_path)
    cached = _cache_files(tmp_path)
    assert any(name.startswith("softmax._softmax_rows") for name in cached), cached
    warm = _check(tmp_path)
    assert _cache_files(tmp_path) == cached  # nothing recompiled: no index, no new entry in one
    assert warm < cold, (cold, warm)


def _cache_files(tmp_path):
    """The names of numba's cache indexes (.nbi) and compiled entries (.nbc): a function whose
    cache key changes every process (a dispatcher passed as an argument does) adds an entry
    per run."""
    return sorted(p.name for p in (tmp_path / "numba").rglob("*.nb[ic]"))
