"""`llmref check`: every available accelerated backend against the goldens.

The result is a component x backend x dtype matrix of audit reports. Under the CUDA
simulator, numba-cuda runs only the cases small enough to simulate in seconds.
"""
from dataclasses import dataclass

import numpy as np

from llmref.audit import Report, audit, select_cases
from llmref.backends import BACKENDS, availability, implementation, simulated
from llmref.parallel import run_tasks
from llmref.spec import all_specs, load_spec
from llmref.store import load_case

# The simulator runs every GPU thread as a Python thread: keep its work to seconds. float16
# and bfloat16 reach the kernels widened to float32 on the host, so float32 covers the kernel.
SIMULATOR_MAX_ELEMENTS = 1024
SIMULATOR_DTYPES = ("float32",)


@dataclass
class Cell:
    component: str
    backend: str
    dtype: str
    status: str  # 'pass', 'fail', 'unavailable', 'absent'
    note: str
    report: Report | None = None


def simulator_cases(spec):
    """Smoke cases whose inputs total at most SIMULATOR_MAX_ELEMENTS elements."""
    keep = []
    for case in spec.cases:
        if case.tier != "smoke":
            continue
        size = sum(np.size(v) if not isinstance(v, (str, bytes)) else len(v)
                   for v in load_case(spec, case).inputs.values())
        if size <= SIMULATOR_MAX_ELEMENTS:
            keep.append(case.id)
    return keep


def backend_plan(spec, backend, dtypes=None, cases=None):
    """(dtypes, case ids or None for all) a backend runs: everything it declares, except that
    numba-cuda under the simulator runs float32 on the cases small enough to simulate."""
    run_dtypes = [d for d in spec.accel[backend]["dtypes"] if not dtypes or d in dtypes]
    if backend == "numba-cuda" and simulated():
        return [d for d in run_dtypes if d in SIMULATOR_DTYPES], cases or simulator_cases(spec)
    return run_dtypes, cases


def run_check(components=None, backends=None, dtypes=None, cases=None, tier="smoke",
              progress=None, jobs=1, executor="process"):
    """One Cell per (component, backend, dtype), in that order; the cells that run are audits
    of llmref's own kernels, in this process or spread over `jobs` processes."""
    cells, tasks = [], []
    for spec in all_specs(components):
        for backend in backends or BACKENDS:
            if backend not in spec.accel:
                cells.append(Cell(spec.id, backend, "*", "absent", "no implementation"))
                continue
            ok, note = availability(backend)
            if not ok:
                cells.append(Cell(spec.id, backend, "*", "unavailable", note))
                continue
            run_dtypes, selected = backend_plan(spec, backend, dtypes, cases)
            for dtype in run_dtypes:
                tasks.append({"component": spec.id, "backend": backend, "dtype": dtype,
                              "cases": selected, "tier": tier})
                cells.append(tasks[-1])
    reports = iter(run_tasks(check_cell_task, tasks, jobs, executor, progress))
    return [c if isinstance(c, Cell) else _cell(c, Report.from_dict(next(reports))) for c in cells]


def check_cell_task(task: dict) -> dict:
    """One backend at one dtype on one component's cases (plain data in and out)."""
    spec = load_spec(task["component"])
    repro = (f"llmref check --component {spec.id} --backend {task['backend']} "
             f"--dtype {{dtype}} --case {{case}}")
    report = audit(spec, implementation(spec, task["backend"]), cases=task["cases"],
                   dtype=task["dtype"], tier=task["tier"], label=task["backend"], repro=repro)
    return report.to_dict()


def _cell(task, report: Report) -> Cell:
    passed = report.counts().get("PASSED", 0)
    return Cell(task["component"], task["backend"], task["dtype"], "pass" if report.passed else "fail",
                f"{passed}/{len(report.results)}", report)


def invariant_plan(spec, backend):
    """(dtype, case ids or None) the invariants run at on a backend: float32 where it runs
    float32, on the smoke cases it runs; under the CUDA simulator on the first of them only
    (each invariant runs the kernel several times; one case exercises the same code)."""
    dtypes, cases = backend_plan(spec, backend)
    if not dtypes:
        return None, None
    if backend == "numba-cuda" and simulated():
        cases = [c.id for c in select_cases(spec, cases, "smoke")][:1]
    return ("float32" if "float32" in dtypes else dtypes[0]), cases


def check_invariants(components=None, backends=None) -> list:
    """Every spec's invariants on every available backend (llmref.invariants), at the backend's
    first planned dtype and on its planned cases: one dict per (component, backend)."""
    from llmref.invariants import run_invariants

    found = []
    for spec in (s for s in all_specs(components) if s.invariants):
        for backend in backends or BACKENDS:
            if backend not in spec.accel or not availability(backend)[0]:
                continue
            dtype, cases = invariant_plan(spec, backend)
            if dtype is None:
                continue
            results = run_invariants(spec, implementation(spec, backend), dtype, cases)
            found.append({"component": spec.id, "backend": backend, "dtype": dtype,
                          "passed": sum(r.ok for r in results), "total": len(results),
                          "failures": [r.to_dict() for r in results if not r.ok]})
    return found

