"""W4A16 benchmark.

GPU (default): the CUDA C kernel (accel/cupy/w4a16.cu) against fp16 cupy.matmul (cuBLAS) on
the same shapes in the same run, timed with CUDA events after flushing L2; achieved weight-read
bandwidth = (packed weights + scales + zeros) / time, next to the same run's device-to-device
copy bandwidth. Writes bench/results/w4a16_<device>.json.

    python bench/w4a16.py                 # needs a CUDA GPU and CuPy
    python bench/w4a16.py --cpu           # numba-cpu kernel vs the NumPy reference

CPU: numba-cpu w4a16_matmul against the NumPy reference on one shape, both in this run,
writes bench/results/w4a16_cpu.json.
"""
import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
GPU_SHAPES = [(4096, 4096), (8192, 8192), (14336, 4096)]  # (N, K): y = x W^T, W (N, K)
BATCHES = [1, 2, 4, 8, 16, 32, 64]
GROUP_SIZE = 128


def operands(rng, m, k, n, group_size, dtype):
    from llmref.ref.quant import w4a16_case

    ops = w4a16_case(rng, M=m, K=k, N=n, GS=group_size)
    ops["x"] = ops["x"].astype(dtype)
    ops["scales"] = ops["scales"].astype(dtype)
    return ops


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def versions(*names):
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def cpu_name():
    """The CPU model from /proc/cpuinfo where there is one, else the platform's name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_cpu(args):
    import numba

    from llmref.accel.numba_cpu.quant import w4a16_matmul as fast
    from llmref.ref.quant import w4a16_matmul as reference

    m, k, n = args.m, args.k, args.n
    ops = operands(np.random.default_rng(0), m, k, n, GROUP_SIZE, np.float16)
    call = dict(ops, group_size=GROUP_SIZE)
    fast(**call)  # compile (or load from cache) before timing
    t_fast = median_seconds(lambda: fast(**call), args.repeats)
    t_ref = median_seconds(lambda: reference(**call), args.repeats)
    diff = np.abs(fast(**call).astype(np.float64) - reference(**call).astype(np.float64)).max()
    result = {
        "benchmark": "w4a16_matmul numba-cpu vs NumPy reference",
        "device": f"cpu: {cpu_name()}, {numba.config.NUMBA_NUM_THREADS} numba threads",
        "command": "python bench/w4a16.py --cpu " + f"--m {m} --k {k} --n {n} --repeats {args.repeats}",
        "versions": versions("numpy", "numba"),
        "shape": {"M": m, "K": k, "N": n, "group_size": GROUP_SIZE, "dtype": "float16"},
        "median_seconds": {"numba_cpu": t_fast, "numpy_reference": t_ref},
        "speedup_numba_over_reference": t_ref / t_fast,
        "max_abs_difference": float(diff),
        "note": "numba-cpu accumulates in float32 from the packed codes; the reference "
                "dequantizes the whole weight in float64. Timings are medians in one run.",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "w4a16_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def gpu_time(cupy, fn, flush, repeats):
    """Median milliseconds of fn over `repeats` launches, L2 flushed before each."""
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(repeats):
        flush()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def run_gpu(args):
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no CuPy, no driver or no device
        sys.exit(f"bench/w4a16.py: no CUDA GPU available ({type(exc).__name__}: {exc}); "
                 f"run with --cpu for the numba-cpu benchmark")
    from llmref.accel.cupy._module import raw_module
    from llmref.accel.cupy.quant import WARPS, kernel_words, rows_per_pass
    from llmref.accel._host import raw_bits

    props = cupy.cuda.runtime.getDeviceProperties(0)
    device = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    l2 = cupy.empty(props.get("l2CacheSize", 50 * 2 ** 20) * 2, dtype=np.uint8)

    def flush():
        l2.fill(0)

    copy_src = cupy.empty(1 << 30, dtype=np.uint8)
    copy_dst = cupy.empty_like(copy_src)
    copy_ms = gpu_time(cupy, lambda: copy_dst.__setitem__(Ellipsis, copy_src), flush, args.repeats)
    copy_bw = 2 * copy_src.nbytes / (copy_ms * 1e-3)  # read + write bytes per second

    rng = np.random.default_rng(0)
    rows = []
    for n, k in GPU_SHAPES:
        for m in BATCHES:
            ops = operands(rng, m, k, n, GROUP_SIZE, np.float16)
            x = cupy.asarray(raw_bits(ops["x"]))
            w = cupy.asarray(kernel_words(ops["w_packed"]))
            s = cupy.asarray(raw_bits(ops["scales"]))
            z = cupy.asarray(ops["zeros"])
            y = cupy.empty((m, n), dtype=np.uint16)
            kernel = raw_module("w4a16.cu").get_function(f"w4a16_f16_m{rows_per_pass(m)}")
            launch = lambda: kernel(((n + WARPS - 1) // WARPS,), (WARPS * 32,),  # noqa: E731
                                    (x, w, s, z, y, np.int32(m), np.int32(n), np.int32(k),
                                     np.int32(GROUP_SIZE)))
            ms = gpu_time(cupy, launch, flush, args.repeats)
            x16 = cupy.asarray(ops["x"])
            w16 = cupy.asarray(rng.normal(size=(k, n)).astype(np.float16))
            fp16_ms = gpu_time(cupy, lambda: cupy.matmul(x16, w16), flush, args.repeats)
            weight_bytes = w.nbytes + s.nbytes + z.nbytes
            rows.append({"N": n, "K": k, "M": m, "w4a16_ms": ms, "fp16_matmul_ms": fp16_ms,
                         "speedup_over_fp16": fp16_ms / ms,
                         "weight_read_GBps": weight_bytes / (ms * 1e-3) / 1e9,
                         "fraction_of_copy_bandwidth": weight_bytes / (ms * 1e-3) / copy_bw})
            print(rows[-1])
    result = {"benchmark": "w4a16_matmul CUDA C kernel vs fp16 cupy.matmul", "device": device,
              "command": "python bench/w4a16.py", "versions": versions("numpy", "cupy"),
              "group_size": GROUP_SIZE, "copy_bandwidth_GBps": copy_bw / 1e9, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    slug = "".join(ch if ch.isalnum() else "_" for ch in device.lower()).strip("_")
    (RESULTS / f"w4a16_{slug}.json").write_text(json.dumps(result, indent=2) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="numba-cpu vs the NumPy reference")
    parser.add_argument("--m", type=int, default=1)
    parser.add_argument("--k", type=int, default=4096)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    run_cpu(args) if args.cpu else run_gpu(args)


if __name__ == "__main__":
    main()
