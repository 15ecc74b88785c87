"""Where each component lives: one family name across every tree, read off the specs.

A component's family is the module its reference lives in (`ref: llmref.ref.<family>:fn`);
its wrong variants, kernels, tests and benchmark carry the same name:

    specs/<component>.yaml   ref/<family>.py   ref/wrong/<family>.py   golden/<component>/
    accel/numba_cpu/<family>.py   accel/numba_cuda/<family>.py   accel/cupy/<family>.py (+ .cu)
    tests/test_<family>.py   bench/<family>.py

`python -m llmref.layout` prints the table CONTRIBUTING.md holds (a test keeps them equal).
"""
from pathlib import Path

from llmref.spec import BACKENDS, all_specs

ROOT = Path(__file__).resolve().parents[1]
_BACKEND_DIRS = {"numba-cpu": "numba_cpu", "numba-cuda": "numba_cuda", "cupy": "cupy"}


def family(spec) -> str:
    return spec.ref.partition(":")[0].rsplit(".", 1)[1]


def _module_file(target: str) -> str:
    """'llmref.ref.wrong.rope:fn' -> 'ref/wrong/rope.py'."""
    parts = target.partition(":")[0].split(".")[1:]
    return "/".join(parts) + ".py"


def rows(root: Path = ROOT) -> list:
    """One dict per component: its family and the file of each tree ('' where it has none)."""
    out = []
    for spec in all_specs():
        name = family(spec)
        wrong = sorted({_module_file(v.impl) for v in spec.wrong_variants})
        row = {"component": spec.id, "family": name, "spec": f"specs/{spec.id}.yaml",
               "reference": _module_file(spec.ref), "wrong variants": ", ".join(wrong),
               "goldens": f"golden/{spec.id}/"}
        for backend in BACKENDS:
            row[backend] = _module_file(spec.accel[backend]["impl"]) if backend in spec.accel else ""
            if backend == "cupy" and row[backend] and (root / "accel/cupy" / f"{name}.cu").exists():
                row[backend] += f" + {name}.cu"
        row["tests"] = f"tests/test_{name}.py" if (root / "tests" / f"test_{name}.py").exists() else ""
        row["bench"] = f"bench/{name}.py" if (root / "bench" / f"{name}.py").exists() else ""
        out.append(row)
    return out


def markdown(root: Path = ROOT) -> str:
    table = rows(root)
    columns = list(table[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r[c] or "-" for c in columns) + " |" for r in table]
    return "\n".join(lines) + "\n"


def misplaced(root: Path = ROOT) -> list:
    """Files that do not carry their component's family name, as 'component: what'."""
    problems = []
    for spec in all_specs():
        name = family(spec)
        for v in spec.wrong_variants:
            if _module_file(v.impl) != f"ref/wrong/{name}.py":
                problems.append(f"{spec.id}: wrong variant {v.id} lives in {_module_file(v.impl)}")
        for backend, entry in spec.accel.items():
            if _module_file(entry["impl"]) != f"accel/{_BACKEND_DIRS[backend]}/{name}.py":
                problems.append(f"{spec.id}: {backend} lives in {_module_file(entry['impl'])}")
        for case in spec.cases:
            if case.generator and _module_file(case.generator) != f"ref/{name}.py":
                problems.append(f"{spec.id}: case {case.id}'s generator lives in {_module_file(case.generator)}")
        if not (root / "tests" / f"test_{name}.py").exists():
            problems.append(f"{spec.id}: no tests/test_{name}.py")
    return problems


if __name__ == "__main__":
    print(markdown(), end="")
