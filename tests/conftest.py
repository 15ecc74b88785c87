import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from llmref.tensorfile import dumps

# Without a GPU, numba.cuda kernels run in the CUDA simulator. This must be decided before
# numba.cuda is first imported. On a machine with a GPU, set LLMREF_REAL_GPU=1 to run them
# on the device instead.
if os.environ.get("LLMREF_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

_PROBE_CHILD = r"""
import base64, json, sys
from llmref.errors import InputError
from llmref.spec import resolve
from llmref.tensorfile import loads
data = sys.stdin.buffer.read()
size = int.from_bytes(data[:8], "little")
request, (arrays, _) = json.loads(data[8:8 + size]), loads(data[8 + size:], "probe calls")

def value(entry):
    if "array" in entry:
        return arrays[entry["array"]].copy()
    if "bytes" in entry:
        return base64.b64decode(entry["bytes"])
    if "objects" in entry:
        import numpy as np
        return np.array(entry["objects"], dtype=entry["dtype"])
    return entry["json"]

fn = resolve(request["target"])
for label, encoded in request["calls"]:
    print("start", label, flush=True)
    try:
        fn(**{k: value(v) for k, v in encoded.items()})
    except InputError as exc:
        print("InputError", label, str(exc).split(":")[0], flush=True)
    except Exception as exc:
        print("other", label, type(exc).__name__, str(exc)[:200].replace(chr(10), " "), flush=True)
    else:
        print("returned", label, flush=True)
"""


def _encoded(target, calls) -> bytes:
    """The probe's request without pickle: a JSON header (8-byte length first) naming each
    call's values, then the arrays as safetensors (llmref.tensorfile)."""
    arrays = {}

    def encode(key, v):
        if isinstance(v, np.ndarray) and v.dtype.kind in "OUSc":  # bad inputs safetensors cannot hold
            return {"objects": v.tolist(), "dtype": v.dtype.str}
        if isinstance(v, np.ndarray):
            arrays[key] = v
            return {"array": key}
        if isinstance(v, bytes):
            return {"bytes": base64.b64encode(v).decode("ascii")}
        return {"json": v}  # str, numbers, None, bool and lists of them

    request = {"target": target, "calls": [[label, {k: encode(f"{n}.{k}", v) for k, v in kwargs.items()}]
                                           for n, (label, kwargs) in enumerate(calls)]}
    head = json.dumps(request).encode("utf-8")
    return len(head).to_bytes(8, "little") + head + dumps(arrays, {})


def _probe(target, calls):
    """target(**kwargs) for every (label, kwargs) in calls, in one child process; returns
    {label: (outcome, detail)}: ("InputError", the argument its message names),
    ("other", "ExceptionType message") or ("returned", "").

    A kernel reached with unchecked ids, lengths or shapes may read or write out of bounds,
    corrupt the heap and kill its process: the assertion then names the child's exit code and
    the label it was running, and the test runner survives."""
    proc = subprocess.run([sys.executable, "-c", _PROBE_CHILD], input=_encoded(target, calls),
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
