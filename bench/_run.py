"""What the side-by-side benchmarks of bench/ (softmax, sample_tokens, moe) share: one thread
for every implementation, median times, the GPU/simulator rule of --mode gpu, and the result
file. Import it before NumPy: the thread counts are fixed when NumPy's BLAS loads.
"""
import json
import os
import platform
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread for every implementation, before numpy loads

import numpy as np  # noqa: E402


def median_seconds(fn, repeats):
    """The median of `repeats` timed calls of fn(), after one warm-up call (numba compiles)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def simulated():
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def gpu_device(script, tiny):
    """{"gpu": name, "simulated": bool} for --mode gpu; exits saying why when there is no GPU,
    or when the CUDA simulator is on without --tiny (a rehearsal, whose times mean nothing)."""
    from numba import cuda

    if simulated() and not tiny:
        sys.exit(f"{script} --mode gpu: the CUDA simulator is enabled; it runs only with --tiny, "
                 "as a rehearsal (or run --mode cpu)")
    if not simulated() and not cuda.is_available():
        sys.exit(f"{script} --mode gpu: no CUDA GPU is available; run --mode cpu instead")
    name = "CUDA simulator" if simulated() else cuda.get_current_device().name
    return {"gpu": name.decode() if isinstance(name, bytes) else str(name), "simulated": simulated()}


def versions(with_torch=False):
    """numpy's and numba's versions, and torch's (set to one thread) if asked and installed."""
    import numba

    found = {"numpy": np.__version__, "numba": numba.__version__}
    if with_torch:
        try:
            import torch
        except ImportError:
            return found
        torch.set_num_threads(1)
        found["torch"] = torch.__version__
    return found


def side_by_side(name, impls, repeats):
    """A result row of workload `name`: the median time of each of impls {name: fn} and the
    ratios of the numba backend to the reference and to torch, measured in this run."""
    times = {impl: median_seconds(fn, repeats) for impl, fn in impls.items()}
    fast = next(impl for impl in times if impl.startswith("numba"))
    row = {"workload": name, "median_s": times,
           f"{fast}_speedup_vs_reference": times["reference"] / times[fast]}
    if "torch" in times:
        row[f"{fast}_time_over_torch"] = times[fast] / times["torch"]
    print(f"{name}: " + "  ".join(f"{k} {v * 1e3:.2f} ms" for k, v in times.items()))
    return row


def write_result(out, benchmark, device, versions, repeats, **fields):
    """The result file: the benchmark, its command, the machine, versions, repeats, fields."""
    result = {"benchmark": benchmark, "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "device": {"machine": platform.machine(), "processor": platform.processor() or "unknown",
                         "cpus": os.cpu_count(), **device},
              "versions": versions, "repeats": repeats, **fields}
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"wrote {out}")
