"""W4A16 GEMV: the CUDA C kernel (cupy), --backend numba-cuda, or numba-cpu with --cpu, beside
the NumPy reference and onnxruntime's MatMulNBits, as `llmref bench --component w4a16_matmul`.

    python bench/w4a16_matmul.py [--cpu] [--backend B] [--tiny] [--repeats N] [--json FILE]

Without a GPU the default (cupy) stops at once, saying so. The shape (M = 1, K = N = 4096,
groups of 128), bytes and peer are the `bench:` section of specs/w4a16_matmul.yaml; the
options are bench/_bench.py's. The whole CPU run, every component, is
bench/results/bench_cpu.json (`llmref bench --json FILE`).
"""
import sys

import _bench

if __name__ == "__main__":
    sys.exit(_bench.run("bench/w4a16_matmul.py", __doc__, ["w4a16_matmul"], ["cupy"]))
