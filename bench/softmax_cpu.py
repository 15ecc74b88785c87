"""Softmax on the CPU: numba-cpu vs the NumPy reference vs torch, one thread, one process.

    python bench/softmax_cpu.py [--out bench/results/softmax_cpu.json]

Reports the median time of each implementation per shape and the ratios measured side by
side in this run (absolute times on a shared machine prove little).
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

SHAPES = [(64, 32000), (8, 128256), (1024, 1024)]
REPEATS = 15


def median_seconds(fn, x):
    fn(x)  # warm-up (and numba compilation)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/softmax_cpu.json")
    args = parser.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    import numba

    from llmref.accel.numba_cpu.softmax import softmax as numba_softmax
    from llmref.ref.softmax import softmax as ref_softmax

    impls = {"reference": ref_softmax, "numba-cpu": numba_softmax}
    versions = {"numpy": np.__version__, "numba": numba.__version__}
    try:
        import torch

        torch.set_num_threads(1)
        impls["torch"] = lambda x: torch.softmax(torch.from_numpy(x), dim=-1).numpy()
        versions["torch"] = torch.__version__
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    rows = []
    for shape in SHAPES:
        x = rng.normal(0, 4, size=shape).astype(np.float32)
        times = {name: median_seconds(fn, x) for name, fn in impls.items()}
        row = {"shape": list(shape), "dtype": "float32", "median_s": times,
               "numba_speedup_vs_reference": times["reference"] / times["numba-cpu"]}
        if "torch" in times:
            row["numba_time_over_torch"] = times["numba-cpu"] / times["torch"]
        rows.append(row)
        print(f"{shape}: " + "  ".join(f"{k} {v * 1e3:.2f} ms" for k, v in times.items())
              + f"  numba/ref speedup {row['numba_speedup_vs_reference']:.2f}x"
              + (f"  numba/torch time {row['numba_time_over_torch']:.2f}" if "torch" in times else ""))
    result = {"benchmark": "softmax_cpu", "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "device": {"machine": platform.machine(), "processor": platform.processor() or "unknown",
                         "cpus": os.cpu_count(), "threads_used": 1},
              "versions": versions, "repeats": REPEATS, "results": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
