"""Run an implementation under audit, in this process or in an isolated worker process.

The worker is a fresh interpreter (`python -c "...serve(...)"`, spawned, never forked after
numba or CUDA have initialised) that imports the implementation by its 'module:callable'
name and answers one request per case over a pair of pipes. Whatever the implementation
does -- raise, print, call sys.exit or os._exit, segfault, hang -- ends at most that case:
the auditor records CRASHED (the exit status or signal, and the worker's last stderr lines)
or TIMEOUT, starts a new worker for the next case, and goes on.

Wire format, both directions: a 4-byte little-endian length and a JSON header, then a
4-byte length and a safetensors blob (llmref.tensorfile) with the arrays the header names.
No pickle: only arrays, strings, bytes and JSON params cross the boundary.
"""
import base64
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from llmref.adapters import Declaration, as_numpy, declaration, signature_problem
from llmref.cases import call_with
from llmref.dtypes import is_float_dtype
from llmref.errors import Unsupported
from llmref.tensorfile import dumps, loads

DEFAULT_TIMEOUT = 60.0  # seconds per case; a first call may include a JIT compile
LOAD_TIMEOUT = 300.0    # seconds to start the worker and import the implementation (torch...)
# `python -c` puts the current directory first on sys.path; the worker drops it before any
# import, so a folder named like an installed package cannot stand in for it.
_BOOT = ("import sys\nif sys.path and sys.path[0] == '': del sys.path[0]\n"
         "from llmref.worker import serve\nserve(int(sys.argv[1]), int(sys.argv[2]))")


@dataclass
class Reply:
    status: str  # 'ok', 'unsupported', 'error', 'crashed', 'timeout'
    outputs: dict = field(default_factory=dict)  # output name -> value, when ok
    detail: str = ""


class Opaque:
    """An output the worker could not turn into an array; comparing it is a DTYPE_MISMATCH."""

    def __init__(self, description):
        self.description = description

    def __array__(self, *args, **kwargs):
        raise TypeError(self.description)


def invoke(fn, output_names, inputs, params) -> Reply:
    """One call of the implementation, every way it can end turned into a Reply; framework
    tensors it returns come back as NumPy (llmref.adapters.as_numpy)."""
    try:
        outputs = call_with(fn, output_names, inputs, params)
        return Reply("ok", {name: as_numpy(value) for name, value in outputs.items()})
    except (Unsupported, NotImplementedError) as exc:
        return Reply("unsupported", detail=str(exc) or type(exc).__name__)
    except SystemExit as exc:
        return Reply("crashed", detail=f"the implementation called sys.exit({exc.code!r})")
    except Exception as exc:  # the implementation under audit failed: report, don't crash
        return Reply("error", detail=f"{type(exc).__name__}: {exc}")


class InProcess:
    """Calls the implementation directly: for debugging, for llmref's own trusted kernels, and
    for callables that have no importable name. It cannot survive os._exit or a segfault."""

    isolation = "in-process"

    def __init__(self, fn):
        self.fn = fn

    def load(self, names) -> Declaration:
        """Check the callable takes the spec's argument names; return its declaration."""
        problem = signature_problem(self.fn, names)
        if problem:
            raise WorkerError(problem)
        return declaration(self.fn)

    def run(self, spec, case_id: str, dtype: str, inputs: dict, params: dict) -> Reply:
        return invoke(self.fn, [t.name for t in spec.outputs], inputs, params)

    def close(self):
        pass


class WorkerError(RuntimeError):
    """The worker could not load the implementation (the message says why)."""


class Worker:
    """A spawned interpreter holding the implementation `target` ('module:callable')."""

    isolation = "worker"

    def __init__(self, target: str, timeout: float = DEFAULT_TIMEOUT):
        self.target, self.timeout = target, timeout
        self.proc, self.names = None, []

    def load(self, names) -> Declaration:
        """Start the worker (import, signature check); return the callable's declaration. A
        worker already running for the same names is reused."""
        if self.proc is not None and self.names == list(names):
            return self.declared
        self.close()
        self.names = list(names)
        return self.start()

    def run(self, spec, case_id: str, dtype: str, inputs: dict, params: dict) -> Reply:
        if self.proc is None:
            self.start()
        header = {"op": "call", "outputs": [t.name for t in spec.outputs], "params": params}
        return self._request(header, inputs, self.timeout)

    def start(self) -> Declaration:
        """Spawn the worker and import the target; WorkerError if that fails."""
        to_worker_r, self.send_fd = os.pipe()
        self.recv_fd, from_worker_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(to_worker_r), str(from_worker_w)],
            pass_fds=(to_worker_r, from_worker_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1"))
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.stderr_tail = deque(maxlen=40)
        threading.Thread(target=_drain, args=(self.proc.stderr, self.stderr_tail), daemon=True).start()
        reply = self._request({"op": "load", "target": self.target, "names": self.names}, {},
                              max(self.timeout, LOAD_TIMEOUT))
        if reply.status != "ok":
            self.close()
            raise WorkerError(reply.detail)
        self.declared = Declaration(**json.loads(reply.detail))
        return self.declared

    def _request(self, header, values, timeout) -> Reply:
        deadline = time.monotonic() + timeout
        try:
            _send(self.send_fd, header, values, deadline)
            head, outputs = _receive(self.recv_fd, deadline)
            reply = Reply(head["status"], outputs, str(head.get("detail", "")))
            if reply.status not in ("ok", "unsupported", "error", "crashed"):
                raise ValueError(reply.status)
        except TimeoutError:
            self.close()
            return Reply("timeout", detail=f"no answer within {timeout:g} s (worker killed)")
        except (EOFError, OSError, ValueError, KeyError, TypeError):  # dead, or garbled the pipe
            return Reply("crashed", detail=self._death())
        if reply.status == "crashed":
            self._death()
        return reply

    def _death(self) -> str:
        """Why the worker went away; the next case starts a new one."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        time.sleep(0.05)  # let the stderr reader take the last lines
        self.close()
        if code is None:
            why = "the worker stopped answering"
        elif code < 0:
            why = f"the worker was killed by signal {signal.Signals(-code).name}"
        else:
            why = f"the worker exited with status {code} (os._exit or sys.exit in the implementation?)"
        return why + _last_words(list(self.stderr_tail))

    def close(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for fd in (self.send_fd, self.recv_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.proc = None


def _last_words(lines) -> str:
    """The stderr lines worth quoting: a fatal error and its innermost frame (faulthandler
    prints the most recent call first), else the last few lines."""
    lines = [line.strip() for line in lines if line.strip()]
    fatal = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if fatal is not None:
        frame = next((line for line in lines[fatal:] if line.startswith("File ")), "")
        lines = [lines[fatal], frame] if frame else [lines[fatal]]
    return f"; its last stderr lines: {' | '.join(lines[-3:])}" if lines else ""


def _drain(stream, tail):
    for line in iter(stream.readline, b""):
        tail.append(line.decode("utf-8", "replace").rstrip())


# --- the wire ----------------------------------------------------------------------------

def _to_wire(name, value, arrays: dict) -> dict:
    """A JSON-able description of one value; its array, if any, goes into `arrays`."""
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    try:
        arr = np.asarray(value)
    except Exception as exc:
        return {"opaque": f"cannot convert {type(value).__name__} to an array: {exc}"}
    if arr.dtype.kind not in "biu" and not is_float_dtype(arr.dtype):
        return {"opaque": f"{type(value).__name__} of dtype {arr.dtype} is not numeric"}
    arrays[name] = arr
    return {"array": name}


def _from_wire(entry: dict, arrays: dict):
    if "str" in entry:
        return entry["str"]
    if "bytes" in entry:
        return base64.b64decode(entry["bytes"])
    if "opaque" in entry:
        return Opaque(entry["opaque"])
    return np.array(arrays[entry["array"]])


def _send(fd, header: dict, values: dict, deadline=None):
    arrays = {}
    header = dict(header, values={k: _to_wire(k, v, arrays) for k, v in values.items()})
    head, blob = json.dumps(header).encode("utf-8"), dumps(arrays, {})
    data = memoryview(len(head).to_bytes(4, "little") + head + len(blob).to_bytes(4, "little") + blob)
    while data:
        _wait(fd, deadline, write=True)
        data = data[os.write(fd, data[:1 << 16]):]


def _receive(fd, deadline=None):
    head = json.loads(_read(fd, int.from_bytes(_read(fd, 4, deadline), "little"), deadline))
    blob = _read(fd, int.from_bytes(_read(fd, 4, deadline), "little"), deadline)
    arrays, _ = loads(blob, "worker message")
    return head, {k: _from_wire(v, arrays) for k, v in head.pop("values").items()}


def _read(fd, n, deadline):
    chunks = []
    while n:
        _wait(fd, deadline, write=False)
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _wait(fd, deadline, write):
    if deadline is None:
        return
    remaining = deadline - time.monotonic()
    ready = select.select([], [fd], [], max(remaining, 0))[1] if write else \
        select.select([fd], [], [], max(remaining, 0))[0]
    if not ready:
        raise TimeoutError


# --- the worker's side -------------------------------------------------------------------

def serve(read_fd: int, write_fd: int):
    os.dup2(2, 1)  # the implementation's prints go to stderr, never into the protocol
    sys.path.append(os.getcwd())  # the user's modules, after every installed package
    fn = None
    while True:
        try:
            header, values = _receive(read_fd)
        except EOFError:
            return
        if header["op"] == "load":
            fn, reply = _load(header["target"], header["names"])
        else:
            reply = invoke(fn, header["outputs"], values, header["params"])
        _send(write_fd, {"status": reply.status, "detail": reply.detail}, reply.outputs)
        if reply.status == "crashed":  # the implementation asked to exit: honour it
            os._exit(3)


def _load(target, names):
    """(the callable, Reply) for 'module:callable'; the Reply carries its declaration as JSON,
    or says why there is no usable callable."""
    from llmref.spec import resolve

    try:
        fn = resolve(target, "MODULE:CALLABLE")
    except Exception as exc:  # SpecError naming the import failure
        return None, Reply("error", detail=str(exc))
    except BaseException as exc:  # SystemExit or KeyboardInterrupt raised while importing
        return None, Reply("error", detail=f"importing {target!r} raised {type(exc).__name__}({exc})")
    if not callable(fn):
        return None, Reply("error", detail=f"MODULE:CALLABLE: {target!r} is not callable")
    problem = signature_problem(fn, names)
    if problem:
        return None, Reply("error", detail=problem)
    return fn, Reply("ok", detail=json.dumps(asdict(declaration(fn))))
