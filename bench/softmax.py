"""Softmax and log-softmax over a 128k vocabulary: numba-cpu (or --backend) beside the NumPy
reference and torch, as `llmref bench --component softmax --component log_softmax`.

    python bench/softmax.py [--backend B] [--dtype D] [--tiny] [--repeats N] [--json FILE]

The shapes, bytes and peers are the `bench:` sections of specs/softmax.yaml and
specs/log_softmax.yaml; the options are bench/_bench.py's. The whole CPU run, every
component, is bench/results/bench_cpu.json (`llmref bench --json FILE`).
"""
import sys

import _bench

if __name__ == "__main__":
    sys.exit(_bench.run("bench/softmax.py", __doc__, ["softmax", "log_softmax"], ["numba-cpu"]))
