"""`llmref check`: every available accelerated backend against the goldens.

The result is a component x backend x dtype matrix of audit reports. Under the CUDA
simulator, numba-cuda runs only the cases small enough to simulate in seconds.
"""
import os
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


MAX_DEFAULT_JOBS = 8  # each process holds its own numba and compiled kernels (~300 MB)


def default_jobs(components=None) -> int:
    """Processes for a check when --jobs is not given: one per core, at most MAX_DEFAULT_JOBS,
    when it checks several components (a cold check is compilation, which spreads over
    processes: 207 s -> 126 s on 2 cores); one for a single component, where the pool's
    start-up (a process importing llmref and numba again, ~2.5 s) is most of a warm run."""
    if components is not None and len(components) <= 1:
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_JOBS))


def run_check(components=None, backends=None, dtypes=None, cases=None, tier="smoke",
              progress=None, jobs=1, executor="process", invariants=False):
    """(cells, invariants): one Cell per (component, backend, dtype), in that order, the audits
    of llmref's own kernels; with `invariants`, also each spec's invariants on each backend
    (check_invariant_task), else []. Every task runs in this process, or all of them in one
    pool of `jobs` processes (a second pool would pay the start-up of numba again). A task is
    one backend on one component at float64, or at its other dtypes together (dtype_groups),
    so that the kernels those share are compiled once, by one worker."""
    cells, tasks = [], []
    specs = all_specs(components)
    for spec in specs:
        for backend in backends or BACKENDS:
            if backend not in spec.accel:
                cells.append(Cell(spec.id, backend, "*", "absent", "no implementation"))
                continue
            ok, note = availability(backend)
            if not ok:
                cells.append(Cell(spec.id, backend, "*", "unavailable", note))
                continue
            run_dtypes, selected = backend_plan(spec, backend, dtypes, cases)
            for group in dtype_groups(run_dtypes):
                tasks.append({"component": spec.id, "backend": backend, "dtypes": group,
                              "cases": selected, "tier": tier})
                cells += [(tasks[-1], dtype) for dtype in group]
    n_cells = len(tasks)
    if invariants:
        for spec in (s for s in specs if s.invariants):
            for backend in backends or BACKENDS:
                if backend not in spec.accel or not availability(backend)[0]:
                    continue
                dtype, selected = invariant_plan(spec, backend)
                if dtype is not None:
                    tasks.append({"component": spec.id, "backend": backend, "invariants": True,
                                  "dtype": dtype, "cases": selected})
    results = run_tasks(check_task, tasks, jobs, executor, progress)
    reports = {(id(task), dtype): Report.from_dict(report)
               for task, task_reports in zip(tasks, results[:n_cells])
               for dtype, report in zip(task["dtypes"], task_reports)}
    return ([c if isinstance(c, Cell) else _cell(*c, reports[id(c[0]), c[1]]) for c in cells],
            results[n_cells:])


def dtype_groups(dtypes) -> list:
    """The dtypes of one backend on one component in the groups one task each runs: float64
    alone, the others together (float16 and bfloat16 run the float32 kernels on the CPU; a task
    per dtype had two workers compiling the same float32 kernels at once)."""
    return [group for group in ([d for d in dtypes if d == "float64"], [d for d in dtypes if d != "float64"])
            if group]


def check_task(task: dict) -> dict | list:
    """One task of a check, plain data in and out: a backend on a component (one report per
    dtype), or a spec's invariants on a backend."""
    return check_invariant_task(task) if task.get("invariants") else check_cell_task(task)


def check_cell_task(task: dict) -> list:
    """One backend on one component's cases at each of task["dtypes"]: one report each (plain
    data in and out)."""
    spec = load_spec(task["component"])
    repro = (f"llmref check --component {spec.id} --backend {task['backend']} "
             f"--dtype {{dtype}} --case {{case}}")
    impl = implementation(spec, task["backend"])
    return [audit(spec, impl, cases=task["cases"], dtype=dtype, tier=task["tier"], label=task["backend"],
                  repro=repro).to_dict() for dtype in task["dtypes"]]


def _cell(task, dtype, report: Report) -> Cell:
    passed = report.counts().get("PASSED", 0)
    return Cell(task["component"], task["backend"], dtype, "pass" if report.passed else "fail",
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


def check_invariant_task(task: dict) -> dict:
    """A spec's invariants (llmref.invariants) on one backend, at the dtype and on the cases
    invariant_plan gave it."""
    from llmref.invariants import run_invariants

    spec, backend, dtype = load_spec(task["component"]), task["backend"], task["dtype"]
    results = run_invariants(spec, implementation(spec, backend), dtype, task["cases"])
    return {"component": spec.id, "backend": backend, "dtype": dtype,
            "passed": sum(r.ok for r in results), "total": len(results),
            "failures": [r.to_dict() for r in results if not r.ok]}
