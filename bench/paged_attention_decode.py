"""Paged-attention decode: achieved KV-read bandwidth on the GPU, or numba-cpu vs NumPy.

    python bench/paged_attention_decode.py [--out FILE]      GPU: the CUDA C kernel (cupy backend)
    python bench/paged_attention_decode.py --cpu [--out FILE]  CPU: numba-cpu vs the NumPy reference

GPU mode, per (batch, context) with Hq = 32, Hkv = 8, D = 128, float16, block size 16 and
random block tables (every block read once):
  * kernel time: CUDA events around one launch (decode + split-K merge), L2 flushed before
    each run by writing a buffer larger than L2, median of --repeats runs;
  * KV-read bandwidth = 2 (K and V) * batch * context * Hkv * D * 2 bytes / kernel time, as a
    fraction of the device-to-device copy bandwidth measured in the same run ((read + write)
    bytes / time of a 1 GiB cudaMemcpy);
  * ratios to contiguous baselines in the same run: the same kernel on an identity block
    table (a contiguous cache), and torch scaled_dot_product_attention on the gathered cache
    when a CUDA build of torch is present.
Results go to bench/results/paged_attention_decode_<device>.json. Without a GPU it exits with a
message saying so.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

HQ, HKV, HEAD_DIM = 32, 8, 128
BATCHES = (1, 4, 16, 64)
CONTEXTS = (512, 2048, 8192, 32768)
CPU_BATCHES = (1, 4, 16)
CPU_CONTEXTS = (512, 2048)


def kv_read_bytes(batch, context, itemsize):
    return 2 * batch * context * HKV * HEAD_DIM * itemsize


def command_line():
    return " ".join([os.path.basename(sys.executable)] + sys.argv)


def write_result(path, result):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------
# CPU: numba-cpu vs the NumPy reference, one thread


def cpu_main(args):
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    import numba

    from llmref.accel.numba_cpu.paged_attention_decode import paged_attention_decode as numba_decode
    from llmref.ref.paged_attention_decode import decode_case
    from llmref.ref.paged_attention_decode import paged_attention_decode as ref_decode

    rng = np.random.default_rng(0)
    rows = []
    for batch in CPU_BATCHES:
        for context in CPU_CONTEXTS:
            blocks = batch * context // 16
            case = decode_case(rng, B=batch, Hq=HQ, Hkv=HKV, D=HEAD_DIM, block_size=16,
                               num_blocks=blocks, max_len=context)
            case = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in case.items()}
            case["seq_lens"][:] = context
            case["block_tables"] = rng.permutation(blocks).reshape(batch, -1).astype(np.int32)
            want = ref_decode(**case)
            got = numba_decode(**case)  # also compiles
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
            times = {}
            for name, fn in (("reference", ref_decode), ("numba-cpu", numba_decode)):
                runs = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    fn(**case)
                    runs.append(time.perf_counter() - start)
                times[name] = statistics.median(runs)
            kv = kv_read_bytes(batch, context, 4)
            row = {"batch": batch, "context": context, "dtype": "float32", "median_s": times,
                   "numba_speedup_vs_reference": times["reference"] / times["numba-cpu"],
                   "numba_kv_read_GBps": kv / times["numba-cpu"] / 1e9}
            rows.append(row)
            print(f"B={batch:3d} L={context:5d}: reference {times['reference'] * 1e3:8.2f} ms  "
                  f"numba-cpu {times['numba-cpu'] * 1e3:8.2f} ms  speedup "
                  f"{row['numba_speedup_vs_reference']:.1f}x  numba KV read {row['numba_kv_read_GBps']:.2f} GB/s")
    result = {"benchmark": "paged_attention_decode_cpu", "command": command_line(),
              "device": {"machine": platform.machine(), "processor": platform.processor() or "unknown",
                         "cpus": os.cpu_count(), "threads_used": numba.get_num_threads()},
              "versions": {"python": platform.python_version(), "numpy": np.__version__,
                           "numba": numba.__version__},
              "shape": {"Hq": HQ, "Hkv": HKV, "D": HEAD_DIM, "block_size": 16,
                        "block_tables": "random permutation"},
              "repeats": args.repeats, "results": rows}
    write_result(args.out or "bench/results/paged_attention_decode_cpu.json", result)


# ---------------------------------------------------------------------------------------
# GPU: the CUDA C kernel


def gpu_device():
    """(cupy, device name) or exit with a clear message when there is no GPU."""
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no cupy, no driver
        sys.exit(f"paged_attention_decode benchmark: no CUDA GPU available ({type(exc).__name__}: {exc}); "
                 f"run with --cpu for the CPU comparison")
    if count == 0:
        sys.exit("paged_attention_decode benchmark: no CUDA GPU available; run with --cpu for the CPU comparison")
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return cupy, name.decode() if isinstance(name, bytes) else str(name)


class Timer:
    """Median kernel time with CUDA events, L2 flushed before every run.

    The flush (a write of several times the L2 size) is queued just before the start event;
    while the GPU executes it the host queues the timed launch, so Python launch overhead
    does not show up as idle time between the events."""

    def __init__(self, cupy, repeats):
        self.cupy, self.repeats = cupy, repeats
        l2 = cupy.cuda.Device().attributes["L2CacheSize"]
        self.flush = cupy.empty(max(4 * l2, 256 << 20) // 4, dtype=cupy.float32)
        self.start, self.end = cupy.cuda.Event(), cupy.cuda.Event()

    def __call__(self, fn):
        fn()  # warm-up (compilation, first-touch)
        times = []
        for _ in range(self.repeats):
            self.flush.fill(0.0)
            self.start.record()
            fn()
            self.end.record()
            self.end.synchronize()
            times.append(self.cupy.cuda.get_elapsed_time(self.start, self.end) * 1e-3)
        return statistics.median(times)


def copy_bandwidth(cupy, timer, nbytes=1 << 30):
    """Device-to-device copy bandwidth, (read + write) bytes / time."""
    src, dst = cupy.ones(nbytes, dtype=cupy.uint8), cupy.empty(nbytes, dtype=cupy.uint8)
    seconds = timer(lambda: dst.data.copy_from_device(src.data, nbytes))
    del src, dst
    return 2 * nbytes / seconds


def random_half(cupy, shape):
    """A float16 device array of standard normals, filled in chunks (no float32 copy of it all)."""
    out = cupy.empty(shape, dtype=cupy.float16)
    flat = out.reshape(-1)
    chunk = 1 << 26
    for i in range(0, flat.size, chunk):
        n = min(chunk, flat.size - i)
        flat[i:i + n] = cupy.random.standard_normal(n, dtype=cupy.float32).astype(cupy.float16)
    return out


def sanity_check(cupy_paged):
    """The kernel, with and without split-K, agrees with the float64 reference."""
    from llmref.ref.paged_attention_decode import decode_case, paged_attention_decode

    rng = np.random.default_rng(1)
    case = decode_case(rng, B=3, Hq=HQ, Hkv=HKV, D=HEAD_DIM, block_size=16, num_blocks=100, max_len=700)
    want = paged_attention_decode(**case)
    half = {k: v.astype(np.float16) if v.dtype == np.float64 else v for k, v in case.items()}
    for partition_size in (None, 128):
        got = cupy_paged.paged_attention_decode(**half, partition_size=partition_size)
        err = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
        if err > 4e-3:
            sys.exit(f"paged_attention_decode benchmark: kernel disagrees with the reference (max rel err {err:.2e})")


def sdpa_baseline(timer, q, k_pool, v_pool, tables, batch, context):
    """torch SDPA on the gathered (contiguous) cache, or None without a CUDA torch."""
    try:
        import torch
    except ImportError:
        return None, None
    if not torch.cuda.is_available():
        return None, None
    k = torch.from_dlpack(k_pool[tables].reshape(batch, context, HKV, HEAD_DIM)).transpose(1, 2)
    v = torch.from_dlpack(v_pool[tables].reshape(batch, context, HKV, HEAD_DIM)).transpose(1, 2)
    k, v = k.contiguous(), v.contiguous()  # (B, Hkv, L, D)
    tq = torch.from_dlpack(q)[:, :, None, :]  # (B, Hq, 1, D)
    seconds = timer(lambda: torch.nn.functional.scaled_dot_product_attention(tq, k, v, enable_gqa=True))
    return seconds, torch.__version__


def gpu_main(args):
    cupy, device = gpu_device()
    from llmref.accel.cupy import paged_attention_decode as cupy_paged

    sanity_check(cupy_paged)
    timer = Timer(cupy, args.repeats)
    copy_bw = copy_bandwidth(cupy, timer)
    print(f"{device}: device-to-device copy {copy_bw / 1e9:.0f} GB/s")
    free_bytes = cupy.cuda.Device().mem_info[0]
    rows, torch_version = [], None
    scale = 1.0 / math.sqrt(HEAD_DIM)
    for batch in BATCHES:
        for context in CONTEXTS:
            kv = kv_read_bytes(batch, context, 2)
            if 2.5 * kv > free_bytes:  # pools + gathered copies for the baseline
                continue
            blocks_per_seq = context // args.block_size
            num_blocks = batch * blocks_per_seq
            k_pool = random_half(cupy, (num_blocks, args.block_size, HKV, HEAD_DIM))
            v_pool = random_half(cupy, (num_blocks, args.block_size, HKV, HEAD_DIM))
            q = random_half(cupy, (batch, HQ, HEAD_DIM))
            tables = cupy.random.permutation(num_blocks).astype(cupy.int32).reshape(batch, blocks_per_seq)
            identity = cupy.arange(num_blocks, dtype=cupy.int32).reshape(batch, blocks_per_seq)
            lens = cupy.full(batch, context, dtype=cupy.int32)
            out = cupy.empty(batch * HQ * HEAD_DIM, dtype=cupy.float16)
            parts = {}

            def run(table):
                parts["n"] = cupy_paged.decode_on_device(q, k_pool, v_pool, table, lens, out,
                                                         dtype="float16", scale=scale, max_seq_len=context)

            paged = timer(lambda: run(tables))
            contiguous = timer(lambda: run(identity))
            sdpa, torch_version = sdpa_baseline(timer, q, k_pool, v_pool, tables, batch, context)
            row = {"batch": batch, "context": context, "tokens": batch * context, "kv_bytes": kv,
                   "partitions": parts["n"], "paged_s": paged, "kv_read_GBps": kv / paged / 1e9,
                   "fraction_of_copy_bw": kv / paged / copy_bw,
                   "contiguous_same_kernel_s": contiguous,
                   "paged_over_contiguous_time": paged / contiguous}
            if sdpa is not None:
                row.update({"torch_sdpa_gathered_s": sdpa, "sdpa_time_over_paged": sdpa / paged})
            rows.append(row)
            print(f"B={batch:3d} L={context:6d} parts={parts['n']:3d}: {paged * 1e6:9.1f} us  "
                  f"{row['kv_read_GBps']:7.0f} GB/s = {row['fraction_of_copy_bw']:.0%} of copy  "
                  f"paged/contiguous {row['paged_over_contiguous_time']:.2f}"
                  + (f"  SDPA/paged {row['sdpa_time_over_paged']:.2f}" if sdpa is not None else ""))
            del k_pool, v_pool, q, tables, identity, lens, out
            cupy.get_default_memory_pool().free_all_blocks()
    big = [r["fraction_of_copy_bw"] for r in rows if r["tokens"] >= 65536]
    versions = {"python": platform.python_version(), "numpy": np.__version__, "cupy": cupy.__version__,
                "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
                "cuda_driver": cupy.cuda.runtime.driverGetVersion()}
    if torch_version:
        versions["torch"] = torch_version
    result = {"benchmark": "paged_attention_decode_gpu", "command": command_line(), "device": device,
              "versions": versions,
              "shape": {"Hq": HQ, "Hkv": HKV, "D": HEAD_DIM, "dtype": "float16",
                        "block_size": args.block_size, "block_tables": "random permutation"},
              "repeats": args.repeats, "copy_bandwidth_GBps": copy_bw / 1e9,
              "min_fraction_of_copy_bw_at_64k_tokens_or_more": min(big) if big else None,
              "results": rows}
    slug = "".join(c if c.isalnum() else "_" for c in device.lower()).strip("_")
    write_result(args.out or f"bench/results/paged_attention_decode_{slug}.json", result)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="numba-cpu vs the NumPy reference")
    parser.add_argument("--out", default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per point (median)")
    parser.add_argument("--block-size", type=int, default=16, choices=(16, 32))
    args = parser.parse_args()
    if args.cpu:
        args.repeats = args.repeats or 5
        cpu_main(args)
    else:
        args.repeats = args.repeats or 30
        gpu_main(args)


if __name__ == "__main__":
    main()
