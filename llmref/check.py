"""`llmref check`: every available accelerated backend against the goldens.

The result is a component x backend x dtype matrix of audit reports. Under the CUDA
simulator, numba-cuda runs only the cases small enough to simulate in seconds.
"""
from dataclasses import dataclass

import numpy as np

from llmref.audit import Report, audit
from llmref.backends import BACKENDS, availability, implementation, simulated
from llmref.spec import all_specs
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


def run_check(components=None, backends=None, dtypes=None, cases=None, tier="smoke",
              progress=None):
    """Yield one Cell per (component, backend, dtype)."""
    specs = [s for s in all_specs() if components is None or s.id in components]
    for spec in specs:
        for backend in backends or BACKENDS:
            if backend not in spec.accel:
                yield Cell(spec.id, backend, "*", "absent", "no implementation")
                continue
            ok, note = availability(backend)
            if not ok:
                yield Cell(spec.id, backend, "*", "unavailable", note)
                continue
            fn = implementation(spec, backend)
            selected, run_dtypes = cases, dtypes
            if backend == "numba-cuda" and simulated():
                selected = cases or simulator_cases(spec)
                run_dtypes = dtypes or SIMULATOR_DTYPES
            for dtype in spec.accel[backend]["dtypes"]:
                if run_dtypes and dtype not in run_dtypes:
                    continue
                if progress:
                    progress(spec.id, backend, dtype)
                repro = (f"llmref check --component {spec.id} --backend {backend} "
                         f"--dtype {{dtype}} --case {{case}}")
                report = audit(spec, fn, cases=selected, dtype=dtype, tier=tier,
                               label=backend, repro=repro)
                status = "pass" if report.passed else "fail"
                yield Cell(spec.id, backend, dtype, status, _summary(report), report)


def _summary(report: Report) -> str:
    counts = report.counts()
    passed = counts.get("PASSED", 0)
    return f"{passed}/{len(report.results)}"
