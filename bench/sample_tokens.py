"""Token sampling over a 128k vocabulary: numba-cpu (or --mode gpu) beside the NumPy
reference and transformers' sampler, as `llmref bench --component sample_tokens`.

    python bench/sample_tokens.py [--mode cpu|gpu] [--backend B] [--tiny] [--repeats N] [--json FILE]

The shape, bytes and peer are the `bench:` section of specs/sample_tokens.yaml; the
options are bench/_bench.py's. The whole CPU run, every component, is
bench/results/bench_cpu.json (`llmref bench --json FILE`).
"""
import sys

import _bench

if __name__ == "__main__":
    sys.exit(_bench.run("bench/sample_tokens.py", __doc__, ["sample_tokens"], ["numba-cpu"]))
