"""`llmref bench`: time every backend of every component on the shape its spec declares for
benchmarking, beside the NumPy reference and a peer library, in one run.

A spec's `bench:` section names the shape (`dims`, further `shapes` that change a few of
them, and `tiny` dims for a quick run), the inputs (a recipe or a generator, as in a case),
the params, and what the operation must move and compute: `bytes` and optionally `flops`,
arithmetic in the dims and `e` (bytes per element at the dtype). `peers` maps a library to
an adapter-decorated function (llmref.adapters): its inputs are converted to the library's
tensors once, outside the timing, and the undecorated function is timed.

Method: the implementations of one shape and dtype are timed together. Each runs `warmup`
times (once when a call takes over a second); then, in each of `rounds` rounds, each runs in
turn, after `settle` seconds of rest, at least its share of `repeats` times and of
`min_seconds`. The median of all its runs is reported with the 10th and 90th percentiles. A
burst of load from a neighbour on a shared machine, which lasts seconds, then falls on every
implementation of the row instead of on one of them, so the ratios between them keep their
meaning. The float inputs are cast to the dtype by NumPy (round to nearest even),
not by llmref's integer-only rounding of the goldens, which takes seconds on the
hundreds of millions of elements a benchmark shape holds; a benchmark needs values of the
dtype, not bit-exact goldens. The GPU backends are called as every backend is, on host
arrays, so their times include the transfers to and from the device. The machine's
memory bandwidth is measured in the same run (a single-threaded copy of a buffer far larger
than the caches), and each row's bytes/s is given as a fraction of it, with ratios to the
reference and to each peer measured side by side. One absolute time proves nothing on a
shared machine; the ratios and fractions are what the JSON is for.
"""
import ast
import json
import os
import platform
import time
from importlib import metadata

import numpy as np

from llmref.backends import BACKENDS, availability, implementation, simulated
from llmref.cases import make_inputs
from llmref.dtypes import numpy_dtype
from llmref.errors import InputError
from llmref.spec import Case, all_specs, resolve

SCHEMA = "llmref-bench/1"
COPY_BYTES = 256 * 1024 * 1024
# OpenBLAS's and torch's worker threads spin on a core for a while after each call; a
# parallel kernel timed right after them lost a core to them (an 8 ms stall per call, the
# scheduler's slice, was measured on two cores). Not in a --tiny run, whose times mean nothing.
SETTLE_SECONDS = 0.25
# Rounds of turns per row (the method above); not in a --tiny run either.
ROUNDS = 3


_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.Div: lambda a, b: a / b if b else 0.0, ast.FloorDiv: lambda a, b: a // b if b else 0,
              ast.Pow: lambda a, b: a ** b}


def formula(text: str, names: dict) -> float:
    """Evaluate arithmetic over dim names (+ - * / // ** and parentheses), never eval()."""
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):  # not bool, str
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise InputError(f"bench: {text!r} names {node.id!r}, which is not a dim")
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            a, b = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(b) > 64:
                raise InputError(f"bench: {text!r} raises to the power {b}; at most 64")
            return _OPERATORS[type(node.op)](a, b)  # only the operator named: never a ** b for a * b
        raise InputError(f"bench: {text!r} is not plain arithmetic over dims")
    return float(walk(ast.parse(str(text), mode="eval")))


def bench_cases(spec, tiny=False) -> list:
    """The benchmark shapes as Cases: `dims`, then each entry of `shapes` (a few dims changed,
    e.g. M = 16 beside a decode GEMV's M = 1), the `tiny` dims over each in a quick run. Each is
    seeded like any case, by component and its id ('bench', 'bench_M16', ...)."""
    b = spec.bench
    params = {name: p["default"] for name, p in spec.params.items()}
    params.update(b.get("params") or {})
    cases = []
    for changed in [{}] + list(b.get("shapes") or []):
        dims = dict(b["dims"], **changed, **((b.get("tiny") or {}) if tiny else {}))
        name = "bench" + "".join(f"_{k}{v}" for k, v in changed.items()) + ("_tiny" if tiny else "")
        cases.append(Case(name, "full", dims, b.get("inputs") or {}, params, b.get("generator"), ""))
    return cases


def bench_inputs(spec, inputs: dict, dtype: str) -> dict:
    """The inputs at `dtype`: 'float' inputs cast by NumPy (nearest even), the rest unchanged."""
    target = numpy_dtype(dtype)
    return {t.name: np.asarray(inputs[t.name]).astype(target) if t.dtype == "float" else inputs[t.name]
            for t in spec.inputs}


def time_calls(calls: dict, warmup=2, repeats=5, min_seconds=0.3, settle=0.0, rounds=1) -> dict:
    """{name: timing or the exception it raised} for the callables in `calls`, timed in turns
    (the method above). A callable that raises is dropped from the rounds."""
    results = {}
    for name, fn in calls.items():
        try:
            for _ in range(warmup):
                t0 = time.perf_counter()
                fn()
                if time.perf_counter() - t0 > 1.0:  # compiled and warm; a slow call needs no second
                    break
        except Exception as exc:  # a backend that cannot run this shape says why instead of a time
            results[name] = exc
    times = {name: [] for name in calls if name not in results}
    per_round, seconds = -(-repeats // rounds), min_seconds / rounds
    for _ in range(rounds):
        for name in list(times):
            time.sleep(settle)  # the previous call's thread pools stop spinning first
            start, count = time.perf_counter(), 0
            try:
                while count < per_round or time.perf_counter() - start < seconds:
                    t0 = time.perf_counter()
                    calls[name]()
                    times[name].append(time.perf_counter() - t0)
                    count += 1
                    if count >= 1000:
                        break
            except Exception as exc:
                results[name] = exc
                del times[name]
    for name, found in times.items():
        found = np.array(found)
        results[name] = {"median_s": float(np.median(found)), "p10_s": float(np.percentile(found, 10)),
                         "p90_s": float(np.percentile(found, 90)), "runs": int(found.size)}
    return results


def copy_bandwidth(nbytes=COPY_BYTES) -> float:
    """Bytes moved per second by a single-threaded copy (read + write) of `nbytes`."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    t = time_calls({"copy": lambda: np.copyto(dst, src)}, warmup=1, repeats=5, min_seconds=0.5)
    return 2 * nbytes / t["copy"]["median_s"]


def machine() -> dict:
    import numba

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {"numpy": np.__version__, "numba": numba.__version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "onnxruntime", "tiktoken", "tokenizers", "gguf", "numba-cuda"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        versions["cupy"] = __import__("cupy").__version__
    except Exception:  # not installed, or no CUDA runtime
        pass
    found = {"cpu": cpu, "cores": os.cpu_count(), "numba_threads": numba.config.NUMBA_NUM_THREADS,
             "platform": platform.platform(), "versions": versions,
             "backends": {b: {"available": ok, "note": note} for b in BACKENDS
                          for ok, note in [availability(b)]}}
    if "torch" in versions:
        import torch

        found["torch_threads"] = torch.get_num_threads()
    return found


def run_bench(components=None, backends=None, dtypes=None, tiny=False, progress=None, **timing) -> dict:
    """The benchmark document: machine, copy bandwidth, and one row per
    (component, shape, dtype, implementation)."""
    specs = [s for s in all_specs(components) if s.bench]
    timing.setdefault("settle", 0.0 if tiny else SETTLE_SECONDS)  # a smoke run times nothing
    timing.setdefault("rounds", 1 if tiny else ROUNDS)
    bandwidth = copy_bandwidth(16 * 1024 * 1024 if tiny else COPY_BYTES)
    rows = []
    for spec, case in [(s, c) for s in specs for c in bench_cases(s, tiny)]:
        base = make_inputs(spec, case)
        for dtype in spec.bench.get("dtypes") or [d for d in spec.dtypes if d != "float64"] or ["float64"]:
            if dtypes and dtype not in dtypes:
                continue
            fed = bench_inputs(spec, base, dtype)
            names = dict(case.dims, e=numpy_dtype(dtype).itemsize)
            nbytes = formula(spec.bench["bytes"], names)
            flops = formula(spec.bench["flops"], names) if spec.bench.get("flops") else None
            found = [_row(spec, dtype, "reference", "reference", case, nbytes)]
            calls = {"reference": _call(resolve(spec.ref), fed, case.params)}
            for backend in backends or BACKENDS:
                if backend not in spec.accel or dtype not in spec.accel[backend]["dtypes"]:
                    continue
                ok, why = availability(backend)
                if not ok or (backend == "numba-cuda" and simulated()):
                    found.append({"component": spec.id, "implementation": backend, "dtype": dtype,
                                  "dims": case.dims,
                                  "skipped": why if not ok else "the CUDA simulator is not a benchmark"})
                    continue
                found.append(_row(spec, dtype, backend, "backend", case, nbytes))
                calls[backend] = _call(implementation(spec, backend), fed, case.params)
                if backend != "numba-cpu":
                    found[-1]["note"] = "host arrays in and out: the time includes the device transfers"
            for peer, target in (spec.bench.get("peers") or {}).items():
                found.append(_row(spec, dtype, peer, "peer", case, nbytes))
                try:
                    calls[peer] = _peer_call(spec, dtype, peer, target, fed, case.params)
                except _NotTimed as why:
                    found[-1]["skipped"] = str(why)
            timings = time_calls(calls, **timing)
            for r in found:
                if r["implementation"] in timings:
                    _record(r, timings[r["implementation"]], flops, bandwidth)
            reference = found[0]
            peers = [r for r in found if r.get("kind") == "peer" and "median_s" in r]
            for r in (r for r in found if "median_s" in r):
                if "median_s" in reference:  # else the reference's row says why it has no time
                    r["vs_reference"] = reference["median_s"] / r["median_s"]
                for p in peers:
                    r[f"vs_{p['implementation']}"] = p["median_s"] / r["median_s"]
            rows += found
            if progress:
                progress()
    return {"schema": SCHEMA, "tiny": tiny, "machine": machine(), "copy_bandwidth_bytes_per_s": bandwidth,
            "notes": {s.id: s.bench["note"] for s in specs if s.bench.get("note")}, "rows": rows}


class _NotTimed(Exception):
    """A peer that cannot run here (its library is missing, or it declares other dtypes)."""


def _row(spec, dtype, name, kind, case, nbytes) -> dict:
    return {"component": spec.id, "implementation": name, "kind": kind, "dtype": dtype,
            "dims": case.dims, "bytes": nbytes}


def _record(row, timing, flops, bandwidth):
    """Fill `row` with its timing, bytes/s and FLOP/s, or with why it has none."""
    if isinstance(timing, Exception):
        row["skipped"] = f"{type(timing).__name__}: {timing}"
        return
    row.update(timing)
    row["bytes_per_s"] = row["bytes"] / row["median_s"]
    row["of_copy_bandwidth"] = row["bytes_per_s"] / bandwidth
    if flops:
        row["flops"], row["flop_per_s"] = flops, flops / row["median_s"]


def _call(fn, fed, params):
    return lambda: fn(**fed, **params)


def _peer_call(spec, dtype, peer, target, fed, params):
    """The peer's undecorated function on its library's tensors, converted here, once."""
    from llmref.adapters import declaration

    try:
        fn = resolve(target, f"{spec.id}.yaml: bench.peers.{peer}")
    except Exception as exc:  # the library is not installed here
        raise _NotTimed(str(exc)) from exc
    declared = declaration(fn)
    if declared.dtypes and dtype not in declared.dtypes:
        raise _NotTimed(f"{target} declares dtypes {list(declared.dtypes)}, not {dtype}")
    inner = getattr(fn, "__wrapped__", fn)
    if declared.framework == "torch":
        from llmref.adapters import numpy_to_torch

        fed = {k: numpy_to_torch(v) if isinstance(v, np.ndarray) else v for k, v in fed.items()}
    return _call(inner, fed, params)


def render_json(document, path):
    text = json.dumps(document, indent=1)
    if path == "-":
        print(text)
    else:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
