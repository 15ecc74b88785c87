import os
import pickle
import subprocess
import sys

import pytest

# Without a GPU, numba.cuda kernels run in the CUDA simulator. This must be decided before
# numba.cuda is first imported. On a machine with a GPU, set LLMREF_REAL_GPU=1 to run them
# on the device instead.
if os.environ.get("LLMREF_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

_PROBE_CHILD = r"""
import pickle, sys
from llmref.errors import InputError
from llmref.spec import resolve
target, calls = pickle.load(sys.stdin.buffer)
fn = resolve(target)
for label, kwargs in calls:
    print("start", label, flush=True)
    try:
        fn(**kwargs)
    except InputError as exc:
        print("InputError", label, str(exc).split(":")[0], flush=True)
    except Exception as exc:
        print("other", label, type(exc).__name__, str(exc)[:200].replace(chr(10), " "), flush=True)
    else:
        print("returned", label, flush=True)
"""


def _probe(target, calls):
    """target(**kwargs) for every (label, kwargs) in calls, in one child process; returns
    {label: (outcome, detail)}: ("InputError", the argument its message names),
    ("other", "ExceptionType message") or ("returned", "").

    A kernel reached with unchecked ids, lengths or shapes may read or write out of bounds,
    corrupt the heap and kill its process: the assertion then names the child's exit code and
    the label it was running, and the test runner survives."""
    proc = subprocess.run([sys.executable, "-c", _PROBE_CHILD], input=pickle.dumps((target, calls)),
                          capture_output=True, timeout=900)
    lines = [line.split(" ", 2) for line in proc.stdout.decode().splitlines()]
    started = [line[1] for line in lines if line[0] == "start"]
    assert proc.returncode == 0, (f"{target} exited with {proc.returncode} during "
                                  f"{started[-1] if started else '?'}: {proc.stderr.decode()[-2000:]}")
    return {line[1]: (line[0], line[2] if len(line) > 2 else "") for line in lines if line[0] != "start"}


@pytest.fixture
def probe():
    """probe(target, calls): calls the `module:function` target with each (label, kwargs) of
    calls in a child process (see _probe) -- for bad-input tests of kernels that a missed check
    would let crash."""
    return _probe
