"""A Mixtral-style MoE layer and a DeepSeek-V3 router: numba-cpu (or --mode gpu) beside the
NumPy reference and torch, as `llmref bench --component moe_layer --component moe_router`.

    python bench/moe.py [--mode cpu|gpu] [--backend B] [--tiny] [--repeats N] [--json FILE]

The shapes, bytes and peers are the `bench:` sections of specs/moe_layer.yaml and
specs/moe_router.yaml; the options are bench/_bench.py's. The whole CPU run, every
component, is bench/results/bench_cpu.json (`llmref bench --json FILE`).
"""
import sys

import _bench

if __name__ == "__main__":
    sys.exit(_bench.run("bench/moe.py", __doc__, ["moe_layer", "moe_router"], ["numba-cpu"]))
