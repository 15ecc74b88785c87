"""Paged-attention decode: the CUDA C kernel (cupy), or numba-cpu with --cpu, beside the NumPy
reference and torch SDPA on a contiguous cache, as
`llmref bench --component paged_attention_decode`.

    python bench/paged_attention_decode.py [--cpu] [--backend B] [--tiny] [--repeats N] [--json FILE]

Without a GPU the default (cupy) stops at once, saying so. The shape (8 sequences of 4096
tokens, 32/8 heads of dim 128), bytes and peer are the `bench:` section of
specs/paged_attention_decode.yaml; the options are bench/_bench.py's. The whole CPU run,
every component, is bench/results/bench_cpu.json (`llmref bench --json FILE`).
"""
import sys

import _bench

if __name__ == "__main__":
    sys.exit(_bench.run("bench/paged_attention_decode.py", __doc__, ["paged_attention_decode"], ["cupy"]))
