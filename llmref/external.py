"""Audit an implementation in any language: a program run once per case, exchanging
safetensors files (protocol in specs/FORMAT.md, "Auditing a program").

For each case the auditor writes the inputs to INPUTS (one tensor per input, named as in the
spec; float inputs in the audited dtype; text as UTF-8 bytes), with metadata `component`,
`case`, `dtype`, `params` (JSON) and `outputs` (JSON list of {name, kind}), and runs the
command with `{inputs}` and `{outputs}` replaced by the two paths (or, if the command names
neither, with the two paths appended), also given as LLMREF_INPUTS / LLMREF_OUTPUTS. The
program writes one tensor per output to OUTPUTS and exits 0. Exit status 77 means "this case
is not supported" (UNSUPPORTED, stderr as the reason); any other status is RUNTIME_ERROR with
the end of stderr; death by a signal is CRASHED; running past the timeout is TIMEOUT.
"""
import json
import os
import shlex
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from llmref.adapters import Declaration
from llmref.dtypes import TEXT_KINDS
from llmref.tensorfile import TensorFileError, dumps, loads, read_bytes
from llmref.worker import DEFAULT_TIMEOUT, Reply

UNSUPPORTED_STATUS = 77


class External:
    """Runs `command` (a shell-like string) once per case."""

    isolation = "process per case"

    def __init__(self, command: str, timeout: float = DEFAULT_TIMEOUT):
        self.command, self.argv = command, shlex.split(command)
        if not self.argv:
            raise ValueError("--exec: the command is empty")
        self.timeout = timeout

    def load(self, names) -> Declaration:
        return Declaration(framework="external")

    def run(self, spec, case_id: str, dtype: str, inputs: dict, params: dict) -> Reply:
        kinds = {t.name: t.dtype for t in spec.inputs + spec.outputs}
        with tempfile.TemporaryDirectory(prefix="llmref-exec-") as tmp:
            in_path, out_path = Path(tmp) / "inputs.safetensors", Path(tmp) / "outputs.safetensors"
            tensors = {name: _as_tensor(value) for name, value in inputs.items()}
            metadata = {"component": spec.id, "case": case_id, "dtype": dtype,
                        "params": json.dumps(params, sort_keys=True),
                        "outputs": json.dumps([{"name": t.name, "kind": t.dtype} for t in spec.outputs])}
            in_path.write_bytes(dumps(tensors, metadata))
            status, stderr = self._execute(in_path, out_path)
            if status == "timeout":
                return Reply("timeout", detail=f"no result within {self.timeout:g} s (process killed)")
            if status < 0:
                return Reply("crashed", detail=f"killed by signal {signal.Signals(-status).name}{stderr}")
            if status == UNSUPPORTED_STATUS:
                return Reply("unsupported", detail=stderr.removeprefix("; stderr: ") or "exit status 77")
            if status != 0:
                return Reply("error", detail=f"exit status {status}{stderr}")
            try:
                written, _ = loads(read_bytes(out_path), "outputs.safetensors")
            except TensorFileError as exc:
                return Reply("error", detail=f"the program wrote no readable outputs: {exc}")
            missing = [t.name for t in spec.outputs if t.name not in written]
            if missing:
                return Reply("error", detail=f"outputs.safetensors lacks {missing}")
            return Reply("ok", {name: _from_tensor(kinds[name], written[name])
                                for name in (t.name for t in spec.outputs)})

    def _execute(self, in_path, out_path):
        paths = {"{inputs}": str(in_path), "{outputs}": str(out_path)}
        argv = [paths.get(a, a) for a in self.argv]
        if argv == self.argv:
            argv += [str(in_path), str(out_path)]
        env = dict(os.environ, LLMREF_INPUTS=str(in_path), LLMREF_OUTPUTS=str(out_path))
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            return 127, f"; cannot run {argv[0]!r}: {exc.strerror or exc}"
        try:
            _, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "timeout", ""
        lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
        return proc.returncode, (f"; stderr: {' | '.join(lines[-3:])}" if lines else "")

    def close(self):
        pass


def _as_tensor(value) -> np.ndarray:
    if isinstance(value, str):
        return np.frombuffer(value.encode("utf-8"), dtype=np.uint8).copy()
    if isinstance(value, bytes):
        return np.frombuffer(value, dtype=np.uint8).copy()
    return np.ascontiguousarray(value)


def _from_tensor(kind, arr):
    if kind in TEXT_KINDS:
        data = bytes(np.asarray(arr, np.uint8))
        return data.decode("utf-8", "replace") if kind == "str" else data
    return np.array(arr)
