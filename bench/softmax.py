"""Softmax on the CPU: numba-cpu vs the NumPy reference vs torch, one thread, one process.

    python bench/softmax.py [--out bench/results/softmax_cpu.json]

Reports the median time of each implementation per shape and the ratios measured side by
side in this run (absolute times on a shared machine prove little).
"""
import argparse

import _run  # before numpy: one thread for every implementation
import numpy as np

SHAPES = [(64, 32000), (8, 128256), (1024, 1024)]
REPEATS = 15


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/softmax_cpu.json")
    args = parser.parse_args()
    from llmref.accel.numba_cpu.softmax import softmax as numba_softmax
    from llmref.ref.softmax import softmax as ref_softmax

    impls = {"reference": ref_softmax, "numba-cpu": numba_softmax}
    versions = _run.versions(with_torch=True)
    if "torch" in versions:
        import torch

        impls["torch"] = lambda x: torch.softmax(torch.from_numpy(x), dim=-1).numpy()
    rng = np.random.default_rng(0)
    rows = []
    for shape in SHAPES:
        x = rng.normal(0, 4, size=shape).astype(np.float32)
        times = {name: _run.median_seconds(lambda: fn(x), REPEATS) for name, fn in impls.items()}
        row = {"shape": list(shape), "dtype": "float32", "median_s": times,
               "numba_speedup_vs_reference": times["reference"] / times["numba-cpu"]}
        if "torch" in times:
            row["numba_time_over_torch"] = times["numba-cpu"] / times["torch"]
        rows.append(row)
        print(f"{shape}: " + "  ".join(f"{k} {v * 1e3:.2f} ms" for k, v in times.items())
              + f"  numba/ref speedup {row['numba_speedup_vs_reference']:.2f}x"
              + (f"  numba/torch time {row['numba_time_over_torch']:.2f}" if "torch" in times else ""))
    _run.write_result(args.out, "softmax_cpu", {"threads_used": 1}, versions, REPEATS, results=rows)


if __name__ == "__main__":
    main()
