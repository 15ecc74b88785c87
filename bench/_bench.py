"""What the per-family scripts of bench/ share: each is `llmref bench` on its components.

The shapes, inputs, bytes and peers live in the specs' `bench:` sections; these scripts only
pick the components and map their old options onto `llmref bench`'s:

    --cpu, --mode cpu      --backend numba-cpu
    --mode gpu             --backend cupy --backend numba-cuda (those the specs have)
    --out FILE             --json FILE
    --backend, --dtype, --tiny, --repeats, --json   passed through

A GPU backend that is not available here stops the script at once, saying so (the CUDA
simulator counts as available: `llmref bench` then lists its rows as skipped, with why).
"""
import argparse
import sys

from llmref.backends import BACKENDS, availability
from llmref.cli import main as llmref_main
from llmref.spec import load_spec

GPU = ("cupy", "numba-cuda")


def run(script: str, doc: str, components: list, default: list, argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python {script}", description=doc.splitlines()[0],
                                     epilog="a thin wrapper of `llmref bench` (see bench/_bench.py)")
    parser.add_argument("--backend", action="append", choices=BACKENDS,
                        help=f"backend to time beside the reference and the peers (default: {' '.join(default)})")
    parser.add_argument("--cpu", action="store_true", help="numba-cpu (as --backend numba-cpu)")
    parser.add_argument("--mode", choices=("cpu", "gpu"), help="cpu: numba-cpu; gpu: cupy and numba-cuda")
    parser.add_argument("--dtype", action="append")
    parser.add_argument("--tiny", action="store_true", help="the specs' tiny shapes (a smoke run)")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--json", "--out", dest="json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.backend:
        backends = args.backend
    elif args.cpu or args.mode == "cpu":
        backends = ["numba-cpu"]
    elif args.mode == "gpu":
        present = {b for c in components for b in load_spec(c).accel}
        backends = [b for b in GPU if b in present]
    else:
        backends = default
    for backend in backends:
        ok, why = availability(backend)
        if backend in GPU and not ok:
            sys.exit(f"{script}: no CUDA GPU available for {backend} ({why}); "
                     "run with --cpu for the numba-cpu benchmark")
    command = ["bench"] + [a for c in components for a in ("--component", c)]
    command += [a for b in backends for a in ("--backend", b)]
    command += [a for d in args.dtype or [] for a in ("--dtype", d)]
    command += ["--tiny"] * args.tiny
    command += ["--repeats", str(args.repeats)] if args.repeats else []
    command += ["--json", args.json] if args.json else []
    return llmref_main(command)
