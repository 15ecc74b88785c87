"""Judge an implementation against the goldens: one outcome per case.

The implementation is any callable taking the case's inputs and params as keyword arguments
named exactly as in the spec (NumPy arrays, Python scalars, str/bytes for text) and returning
its outputs: one value, a tuple in spec order, or a dict by output name.
"""
from dataclasses import dataclass, field

from llmref.cases import call, cast_inputs
from llmref.compare import Comparison, Outcome, compare
from llmref.errors import InputError, Unsupported
from llmref.store import load_case
from llmref.spec import Spec, load_spec
from llmref.tolerance import tolerance_for

DEFAULT_DTYPE = "float32"


@dataclass
class CaseResult:
    case: str
    outcome: Outcome
    detail: str
    comparisons: list = field(default_factory=list)
    repro: str = ""

    def to_dict(self):
        return {"case": self.case, "outcome": self.outcome.value, "detail": self.detail,
                "outputs": [{"output": c.output, "outcome": c.outcome.value, "detail": c.detail,
                             "metrics": c.metrics} for c in self.comparisons],
                "repro": self.repro}


@dataclass
class Report:
    component: str
    implementation: str
    dtype: str
    results: list

    @property
    def passed(self) -> bool:
        """Every case PASSED or UNSUPPORTED, and at least one PASSED."""
        outcomes = [r.outcome for r in self.results]
        return (Outcome.PASSED in outcomes
                and all(o in (Outcome.PASSED, Outcome.UNSUPPORTED) for o in outcomes))

    def counts(self) -> dict:
        counts = {}
        for r in self.results:
            counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
        return counts

    def failures(self) -> list:
        return [r for r in self.results if r.outcome not in (Outcome.PASSED, Outcome.UNSUPPORTED)]

    def to_dict(self):
        return {"component": self.component, "implementation": self.implementation,
                "dtype": self.dtype, "passed": self.passed, "counts": self.counts(),
                "cases": [r.to_dict() for r in self.results]}


def audit(component, fn, *, cases=None, dtype=None, tier="smoke", label=None, repro=None) -> Report:
    """Run `fn` on the component's cases at `dtype` (default float32) and compare.

    cases: case ids to run (default: every case of `tier`; tier 'full' adds the large cases,
    computed live by the reference). repro: a format string for the reproduction command,
    with {case} and {dtype} fields.
    """
    spec = component if isinstance(component, Spec) else load_spec(component)
    dtype = dtype or (DEFAULT_DTYPE if DEFAULT_DTYPE in spec.dtypes else spec.dtypes[0])
    if dtype not in spec.dtypes:
        raise InputError(f"dtype: {spec.id} is specified at {list(spec.dtypes)}, not {dtype!r}")
    selected = select_cases(spec, cases, tier)
    label = label or getattr(fn, "__module__", "?") + ":" + getattr(fn, "__qualname__", repr(fn))
    repro = repro or f"llmref audit {spec.id} {label} --case {{case}} --dtype {{dtype}}"
    results = [run_case(spec, case, fn, dtype, repro.format(case=case.id, dtype=dtype))
               for case in selected]
    return Report(spec.id, label, dtype, results)


def select_cases(spec: Spec, cases, tier):
    if cases is None:
        tiers = ("smoke",) if tier == "smoke" else ("smoke", "full")
        return [c for c in spec.cases if c.tier in tiers]
    known = {c.id for c in spec.cases}
    unknown = [c for c in cases if c not in known]
    if unknown:
        raise InputError(f"cases: {spec.id} has no case {unknown} (known: {sorted(known)})")
    return [spec.case(c) for c in cases]


def run_case(spec: Spec, case, fn, dtype: str, repro: str) -> CaseResult:
    inputs, expected = load_case(spec, case, dtype)
    inputs = cast_inputs(spec, inputs, dtype)
    try:
        actual = call(fn, spec, {k: _copy(v) for k, v in inputs.items()}, dict(case.params))
    except (Unsupported, NotImplementedError) as exc:
        return CaseResult(case.id, Outcome.UNSUPPORTED, str(exc) or type(exc).__name__, repro=repro)
    except Exception as exc:  # the implementation under audit failed: report, don't crash
        return CaseResult(case.id, Outcome.RUNTIME_ERROR, f"{type(exc).__name__}: {exc}", repro=repro)
    tol = tolerance_for(spec, case, dtype)
    comparisons = [compare(t.name, actual[t.name], expected[t.name], t.dtype, dtype, tol)
                   for t in spec.outputs]
    failed = [c for c in comparisons if c.outcome != Outcome.PASSED]
    if not failed:
        return CaseResult(case.id, Outcome.PASSED, "", comparisons, repro)
    first: Comparison = failed[0]
    return CaseResult(case.id, first.outcome, f"{first.output}: {first.detail}", comparisons, repro)


def _copy(value):
    return value.copy() if hasattr(value, "copy") and not isinstance(value, (str, bytes)) else value
