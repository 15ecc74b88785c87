"""W4A16 benchmark: the INT4 weight-only matmul y = x W^T on the GPU or the CPU.

    python bench/w4a16_matmul.py                          # GPU: the CUDA C kernel (cupy)
    python bench/w4a16_matmul.py --backend numba-cuda     # GPU: the numba.cuda kernel
    python bench/w4a16_matmul.py --cpu                    # numba-cpu vs the NumPy reference
    add --tiny for one small shape and 3 repeats (bench/gpu_run.sh --rehearse), --out FILE

cupy: accel/cupy/w4a16_matmul.cu against fp16 cupy.matmul (cuBLAS) on the same shapes in the
same run, timed with CUDA events after flushing L2; achieved weight-read bandwidth = (packed
weights + scales + zeros) / time, next to the same run's device-to-device copy bandwidth.
numba-cuda: the kernel of accel/numba_cuda/w4a16_matmul.py launched on device arrays, timed
with CUDA events (its outputs checked against the reference first); under the CUDA simulator
(--tiny only) it runs for the rehearsal and its times mean nothing ("simulated": true).
CPU: numba-cpu w4a16_matmul against the NumPy reference on one shape, both in this run.
Results go to bench/results/w4a16_matmul_<backend>_<device>.json unless --out says otherwise.
"""
import argparse
import json
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
GPU_SHAPES = [(4096, 4096), (8192, 8192), (14336, 4096)]  # (N, K): y = x W^T, W (N, K)
BATCHES = [1, 2, 4, 8, 16, 32, 64]
TINY_SHAPES, TINY_BATCHES, TINY_REPEATS = [(64, 256)], [1, 3], 3
GROUP_SIZE = 128


def operands(rng, m, k, n, group_size, dtype):
    from llmref.ref.w4a16_matmul import w4a16_case

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
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
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


def slug(text):
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")


def write(result, out, default_name):
    path = Path(out) if out else RESULTS / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def run_cpu(args):
    import numba

    from llmref.accel.numba_cpu.w4a16_matmul import w4a16_matmul as fast
    from llmref.ref.w4a16_matmul import w4a16_matmul as reference

    m, k, n = (1, 256, 64) if args.tiny else (args.m, args.k, args.n)
    ops = operands(np.random.default_rng(0), m, k, n, GROUP_SIZE, np.float16)
    call = dict(ops, group_size=GROUP_SIZE)
    fast(**call)  # compile (or load from cache) before timing
    t_fast = median_seconds(lambda: fast(**call), args.repeats)
    t_ref = median_seconds(lambda: reference(**call), args.repeats)
    diff = np.abs(fast(**call).astype(np.float64) - reference(**call).astype(np.float64)).max()
    result = {
        "benchmark": "w4a16_matmul numba-cpu vs NumPy reference",
        "device": f"cpu: {cpu_name()}, {numba.config.NUMBA_NUM_THREADS} numba threads",
        "command": " ".join(["python"] + sys.argv),
        "versions": versions("numpy", "numba"),
        "shape": {"M": m, "K": k, "N": n, "group_size": GROUP_SIZE, "dtype": "float16"},
        "median_seconds": {"numba_cpu": t_fast, "numpy_reference": t_ref},
        "speedup_numba_over_reference": t_ref / t_fast,
        "max_abs_difference": float(diff),
        "note": "numba-cpu accumulates in float32 from the packed codes; the reference "
                "dequantizes the whole weight in float64. Timings are medians in one run.",
    }
    print(json.dumps(result, indent=2))
    write(result, args.out, "w4a16_matmul_cpu.json")


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


def cupy_device():
    """(cupy, device name), or exit with a clear message where there is no GPU."""
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no CuPy, no driver or no device
        sys.exit(f"bench/w4a16_matmul.py: no CUDA GPU available ({type(exc).__name__}: {exc}); "
                 f"run with --cpu for the numba-cpu benchmark")
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return cupy, name


def run_cupy(args):
    cupy, device = cupy_device()
    from llmref.accel._host import raw_bits
    from llmref.accel.cupy._module import raw_module
    from llmref.accel.cupy.w4a16_matmul import SOURCE, WARPS, kernel_name, kernel_words

    props = cupy.cuda.runtime.getDeviceProperties(0)
    l2 = cupy.empty(props.get("l2CacheSize", 50 * 2 ** 20) * 2, dtype=np.uint8)

    def flush():
        l2.fill(0)

    copy_src = cupy.empty(1 << 30, dtype=np.uint8)
    copy_dst = cupy.empty_like(copy_src)
    copy_ms = gpu_time(cupy, lambda: copy_dst.__setitem__(Ellipsis, copy_src), flush, args.repeats)
    copy_bw = 2 * copy_src.nbytes / (copy_ms * 1e-3)  # read + write bytes per second
    del copy_src, copy_dst

    rng = np.random.default_rng(0)
    rows = []
    batches = TINY_BATCHES if args.tiny else BATCHES
    for n, k in (TINY_SHAPES if args.tiny else GPU_SHAPES):
        ops = operands(rng, max(batches), k, n, GROUP_SIZE, np.float16)  # one weight per shape
        w = cupy.asarray(kernel_words(ops["w_packed"]))
        s = cupy.asarray(raw_bits(ops["scales"]))
        z = cupy.asarray(ops["zeros"])
        w16 = cupy.asarray(rng.normal(size=(k, n)).astype(np.float16))
        for m in batches:
            x = cupy.asarray(raw_bits(ops["x"][:m]))
            y = cupy.empty((m, n), dtype=np.uint16)
            kernel = raw_module(SOURCE).get_function(kernel_name(np.float16, m))
            launch = lambda: kernel(((n + WARPS - 1) // WARPS,), (WARPS * 32,),  # noqa: E731
                                    (x, w, s, z, y, np.int32(m), np.int32(n), np.int32(k),
                                     np.int32(GROUP_SIZE)))
            ms = gpu_time(cupy, launch, flush, args.repeats)
            x16 = cupy.asarray(ops["x"][:m])
            fp16_ms = gpu_time(cupy, lambda: cupy.matmul(x16, w16), flush, args.repeats)
            weight_bytes = w.nbytes + s.nbytes + z.nbytes
            rows.append({"N": n, "K": k, "M": m, "w4a16_ms": ms, "fp16_matmul_ms": fp16_ms,
                         "speedup_over_fp16": fp16_ms / ms,
                         "weight_read_GBps": weight_bytes / (ms * 1e-3) / 1e9,
                         "fraction_of_copy_bandwidth": weight_bytes / (ms * 1e-3) / copy_bw})
            print(rows[-1])
    result = {"benchmark": "w4a16_matmul CUDA C kernel vs fp16 cupy.matmul", "device": device,
              "command": " ".join(["python"] + sys.argv),
              "versions": dict(versions("numpy", "cupy-cuda13x", "cupy-cuda12x"),
                               cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                               cuda_driver=cupy.cuda.runtime.driverGetVersion()),
              "group_size": GROUP_SIZE, "repeats": args.repeats,
              "copy_bandwidth_GBps": copy_bw / 1e9, "rows": rows}
    write(result, args.out, f"w4a16_matmul_cupy_{slug(device)}.json")


def run_numba_cuda(args):
    from numba import cuda

    from llmref.backends import simulated

    if simulated() and not args.tiny:
        sys.exit("bench/w4a16_matmul.py --backend numba-cuda: the CUDA simulator is on "
                 "(NUMBA_ENABLE_CUDASIM=1); it runs only with --tiny, as a rehearsal")
    if not simulated() and not cuda.is_available():
        sys.exit("bench/w4a16_matmul.py --backend numba-cuda: no CUDA GPU available; "
                 "run with --cpu for the numba-cpu benchmark")
    from llmref.accel.numba_cuda import w4a16_matmul as kernels
    from llmref.ref.w4a16_matmul import w4a16_matmul as reference

    device = "CUDA simulator" if simulated() else cuda.get_current_device().name
    device = device.decode() if isinstance(device, bytes) else str(device)
    rng = np.random.default_rng(0)
    rows = []
    batches = TINY_BATCHES if args.tiny else BATCHES
    for n, k in (TINY_SHAPES if args.tiny else GPU_SHAPES):
        ops = operands(rng, max(batches), k, n, GROUP_SIZE, np.float16)  # one weight per shape
        d = {name: cuda.to_device(np.ascontiguousarray(a)) for name, a in (
            ("w", ops["w_packed"]), ("s", ops["scales"].astype(np.float32)), ("z", ops["zeros"]))}
        checked = slice(0, min(n, 256))  # output columns checked against the reference
        sliced = {name: ops[name][checked] for name in ("w_packed", "scales", "zeros")}
        for m in batches:
            x = ops["x"][:m]
            d["x"] = cuda.to_device(np.ascontiguousarray(x.astype(np.float32)))
            y = cuda.device_array((m, n), np.float32)

            def launch():
                kernels.launch(d["x"], d["w"], d["s"], d["z"], GROUP_SIZE, y)

            launch()  # compile before timing, and check
            got = y.copy_to_host()[:, checked].astype(np.float16).astype(np.float64)
            want = reference(x, **sliced, group_size=GROUP_SIZE).astype(np.float64)
            error = float(np.abs(got - want).max() / np.abs(want).max())
            times = []
            for _ in range(args.repeats):
                start, stop = cuda.event(), cuda.event()
                begin = time.perf_counter()
                start.record()
                launch()
                stop.record()
                stop.synchronize()
                times.append(time.perf_counter() - begin if simulated() else start.elapsed_time(stop) * 1e-3)
            seconds = statistics.median(times)
            weight_bytes = d["w"].nbytes + 2 * d["s"].size + d["z"].nbytes  # as fp16 scales
            rows.append({"N": n, "K": k, "M": m, "median_ms": seconds * 1e3,
                         "weight_read_GBps": weight_bytes / seconds / 1e9,
                         "max_error_over_max_output": error})
            print(rows[-1])
    result = {"benchmark": "w4a16_matmul numba.cuda kernel", "device": device,
              "simulated": simulated(), "command": " ".join(["python"] + sys.argv),
              "versions": versions("numpy", "numba", "numba-cuda"), "group_size": GROUP_SIZE,
              "repeats": args.repeats, "rows": rows,
              "note": "one thread per output, the dequantised group table in registers: the "
                      "plain counterpart of the tuned CUDA C kernel (--backend cupy)."}
    write(result, args.out, f"w4a16_matmul_numba_cuda_{slug(device)}.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="numba-cpu vs the NumPy reference")
    parser.add_argument("--backend", choices=("cupy", "numba-cuda"), default="cupy",
                        help="the GPU kernel to time (without --cpu)")
    parser.add_argument("--tiny", action="store_true", help="one small shape, 3 repeats (rehearsal)")
    parser.add_argument("--out", default=None, help="the result file (default bench/results/...)")
    parser.add_argument("--m", type=int, default=1)
    parser.add_argument("--k", type=int, default=4096)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    args.repeats = args.repeats or (TINY_REPEATS if args.tiny else 5)
    if args.cpu:
        run_cpu(args)
    elif args.backend == "numba-cuda":
        run_numba_cuda(args)
    else:
        run_cupy(args)


if __name__ == "__main__":
    main()
