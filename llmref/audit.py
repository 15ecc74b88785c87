"""Judge an implementation against the goldens: one outcome per case, and for a failure the
diagnosis of which known wrong convention it follows.

The implementation is a callable taking the case's inputs and params as keyword arguments
named exactly as in the spec (NumPy arrays, Python scalars, str/bytes for text) and
returning its outputs: one value, a tuple in spec order, or a dict by output name.

Given as a 'module:callable' name it runs in an isolated worker process (llmref.worker),
so exiting, hanging or crashing ends only that case, as CRASHED or TIMEOUT. Given as a
callable object it runs in this process, where it already lives.
"""
import shlex
from dataclasses import dataclass, field

import numpy as np

from llmref.cases import CaseAt, call, widen
from llmref.dtypes import UNIT_ROUNDOFF, is_float_dtype
from llmref.compare import Comparison, Outcome, compare
from llmref.errors import InputError
from llmref.external import External
from llmref.parallel import run_tasks
from llmref.spec import Spec, load_spec, parse_spec_file, resolve
from llmref.store import is_shipped, load_case
from llmref.tolerance import Tolerance, tolerance_for
from llmref.worker import DEFAULT_TIMEOUT, InProcess, Reply, Worker, WorkerError

DEFAULT_DTYPE = "float32"
NOT_FAILED = (Outcome.PASSED, Outcome.UNSUPPORTED)
_REPLY_OUTCOME = {"unsupported": Outcome.UNSUPPORTED, "error": Outcome.RUNTIME_ERROR,
                  "crashed": Outcome.CRASHED, "timeout": Outcome.TIMEOUT}


@dataclass
class CaseResult:
    case: str
    outcome: Outcome
    detail: str
    comparisons: list = field(default_factory=list)
    repro: str = ""
    diagnosis: dict | None = None  # see diagnosis()
    inputs: dict | None = field(default=None, repr=False)  # a failing case's inputs, for reports

    def to_dict(self):
        return {"case": self.case, "outcome": self.outcome.value, "detail": self.detail,
                "outputs": [{"output": c.output, "outcome": c.outcome.value, "detail": c.detail,
                             "metrics": c.metrics} for c in self.comparisons],
                "repro": self.repro, "diagnosis": self.diagnosis}

    @classmethod
    def from_dict(cls, d: dict) -> "CaseResult":
        comparisons = [Comparison(c["output"], Outcome(c["outcome"]), c["detail"], c["metrics"])
                       for c in d["outputs"]]
        return cls(d["case"], Outcome(d["outcome"]), d["detail"], comparisons, d["repro"], d["diagnosis"])


@dataclass
class Report:
    component: str
    implementation: str
    dtype: str
    results: list
    isolation: str = "in-process"

    @property
    def passed(self) -> bool:
        """Every case PASSED or UNSUPPORTED, and at least one PASSED."""
        outcomes = [r.outcome for r in self.results]
        return Outcome.PASSED in outcomes and all(o in NOT_FAILED for o in outcomes)

    def counts(self) -> dict:
        counts = {}
        for r in self.results:
            counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
        return counts

    def failures(self) -> list:
        return [r for r in self.results if r.outcome not in NOT_FAILED]

    def to_dict(self):
        return {"component": self.component, "implementation": self.implementation,
                "dtype": self.dtype, "isolation": self.isolation, "passed": self.passed,
                "counts": self.counts(), "cases": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, d: dict) -> "Report":
        return cls(d["component"], d["implementation"], d["dtype"],
                   [CaseResult.from_dict(c) for c in d["cases"]], d["isolation"])


def audit(component, fn, *, cases=None, dtype=None, tier="smoke", label=None, repro=None,
          timeout=DEFAULT_TIMEOUT, diagnose=True, jobs=1, executor="process", progress=None) -> Report:
    """Run `fn` on the component's cases at `dtype` (default float32) and compare.

    component: a shipped spec's id, or a Spec (e.g. from llmref.spec.parse_spec_file).
    fn: a callable (runs in this process), a 'module:callable' name (runs in a worker
    process with `timeout` seconds per case), or an llmref.external.External program.
    cases: case ids to run (default: every case of `tier`; 'full' adds the large cases,
    computed live by the reference). repro: the reproduction command, in which {case} and
    {dtype} are replaced. diagnose: on a numerical failure, say which of the spec's wrong
    variants the output matches. jobs, executor: spread the cases over that many processes
    (llmref.parallel; a named target or a program only); progress() is called per case.
    """
    spec = component if isinstance(component, Spec) else load_spec(component)
    dtype = dtype or (DEFAULT_DTYPE if DEFAULT_DTYPE in spec.dtypes else spec.dtypes[0])
    if dtype not in spec.dtypes:
        raise InputError(f"dtype: {spec.id} is specified at {list(spec.dtypes)}, not {dtype!r}")
    selected = select_cases(spec, cases, tier)
    runner, label = _runner(fn, timeout, label)
    how = f"--exec {shlex.quote(fn.command)}" if isinstance(fn, External) else label
    repro = repro or f"llmref audit {spec.id} {how} --case {{case}} --dtype {{dtype}}"
    if jobs > 1 or executor != "process":
        if isinstance(runner, InProcess):
            raise InputError("jobs: parallel audits need a 'module:callable' name or --exec, "
                             "not a callable object")
        tasks = [{"component": spec.id, "spec_file": None if is_shipped(spec) else str(spec.path),
                  "target": fn if isinstance(fn, str) else None,
                  "command": fn.command if isinstance(fn, External) else None, "label": label,
                  "case": case.id, "dtype": dtype, "timeout": timeout, "diagnose": diagnose,
                  "repro": repro} for case in selected]
        try:
            done = run_tasks(audit_case_task, tasks, jobs, executor, progress)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        results = [CaseResult.from_dict(d) for d in done]
        return Report(spec.id, label, dtype, results, runner.isolation)
    try:
        results = audit_cases(spec, runner, selected, dtype, repro, diagnose, label, progress)
    finally:
        runner.close()
    return Report(spec.id, label, dtype, results, runner.isolation)


def _runner(fn, timeout, label):
    if isinstance(fn, External):
        return fn, label or f"exec:{fn.command}"
    if isinstance(fn, str):
        return Worker(fn, timeout), label or fn
    if callable(fn):
        return InProcess(fn), label or getattr(fn, "__module__", "?") + ":" + getattr(
            fn, "__qualname__", repr(fn))
    raise InputError(f"fn: expected a callable or a 'module:callable' name, got {type(fn).__name__}")


def audit_cases(spec: Spec, runner, selected, dtype, repro, diagnose, label, progress=None) -> list:
    """The CaseResults of `selected` cases, run one after the other by `runner`."""
    results = []
    try:
        declared = runner.load([t.name for t in spec.inputs] + list(spec.params))
        for case in selected:
            command = repro.replace("{case}", case.id).replace("{dtype}", dtype)
            why = declared.unsupported(case.id, dtype)
            if why:
                results.append(CaseResult(case.id, Outcome.UNSUPPORTED, why, repro=command))
            else:
                at = load_case(spec, case, dtype)
                reply = runner.run(spec, case.id, dtype, at.inputs, case.params)
                result = judge(spec, case, at, dtype, reply, command)
                if diagnose and result.outcome in DIAGNOSABLE and spec.wrong_variants:
                    result.diagnosis = diagnosis(spec, case, at, dtype, reply.outputs)
                results.append(result)
            if progress:
                progress()
    except WorkerError as exc:
        raise InputError(f"MODULE:CALLABLE: {label}: {exc}") from None
    return results


_POOLED = {}  # in a pool process: one worker per (target, timeout), reused across its tasks


def audit_case_task(task: dict) -> dict:
    """One case of an audit, plain data in and out (run by llmref.parallel in a pool process)."""
    spec = parse_spec_file(task["spec_file"]) if task["spec_file"] else load_spec(task["component"])
    if task["command"] is not None:
        runner = External(task["command"], task["timeout"])
    else:
        key = (task["target"], task["timeout"])
        runner = _POOLED.setdefault(key, Worker(task["target"], task["timeout"]))
    [result] = audit_cases(spec, runner, [spec.case(task["case"])], task["dtype"], task["repro"],
                           task["diagnose"], task["label"])
    return result.to_dict()


def select_cases(spec: Spec, cases, tier):
    if cases is None:
        tiers = ("smoke",) if tier == "smoke" else ("smoke", "full")
        return [c for c in spec.cases if c.tier in tiers]
    known = {c.id for c in spec.cases}
    unknown = [c for c in cases if c not in known]
    if unknown:
        raise InputError(f"cases: {spec.id} has no case {unknown} (known: {sorted(known)})")
    return [spec.case(c) for c in cases]


def judge(spec: Spec, case, at: CaseAt, dtype: str, reply: Reply, repro: str) -> CaseResult:
    """The outcome of one case from the implementation's reply to it."""
    if at.error is not None:  # the spec rejects these inputs: raising is the right answer
        if reply.status == "error":
            return CaseResult(case.id, Outcome.PASSED, f"raised, as the spec requires: {reply.detail}",
                              repro=repro)
        if reply.status == "ok":
            return CaseResult(case.id, Outcome.ERROR_EXPECTED, "returned outputs, but the spec rejects "
                              f"these inputs (the reference raises: {at.error})", repro=repro)
    if reply.status != "ok":
        return CaseResult(case.id, _REPLY_OUTCOME[reply.status], reply.detail, repro=repro)
    comparisons = compare_outputs(spec, case, at, reply.outputs, dtype)
    failed = [c for c in comparisons if c.outcome != Outcome.PASSED]
    if not failed:
        return CaseResult(case.id, Outcome.PASSED, "", comparisons, repro)
    first: Comparison = failed[0]
    return CaseResult(case.id, first.outcome, f"{first.output}: {first.detail}", comparisons, repro,
                      inputs=at.inputs)


DIAGNOSABLE = (Outcome.NUMERICAL_MISMATCH, Outcome.NAN_INF_MISMATCH, Outcome.SHAPE_MISMATCH)


def diagnosis(spec: Spec, case, at: CaseAt, dtype: str, actual: dict) -> dict:
    """Which of the spec's wrong variants the failing output matches, and the nearest one by
    NMSE (a near miss).

    Each variant is run like the reference, on the inputs as fed at `dtype`, once in float64
    and once in the evaluation's working precision (float32 below float64: some bugs, such as
    the log of an underflowed softmax, exist only there). The implementation's outputs are
    judged against the variant's as if it were the golden, with the case's tolerance (for an
    exact spec, a few ulps of the dtype: the variant's own roundings are not the spec's).
    """
    tol = tolerance_for(spec, case, dtype)
    if tol.exact:
        tol = Tolerance(rtol=4 * UNIT_ROUNDOFF[dtype], reason="diagnosis of an exact spec")
    matches, nearest = [], None
    for variant in spec.wrong_variants:
        for inputs in _diagnosis_inputs(at.inputs, dtype):
            try:
                made = call(resolve(variant.impl), spec, inputs, case.params)
            except Exception:  # a variant that cannot run this case says nothing about it
                continue
            wrong = CaseAt(at.inputs, {k: np.asarray(v, np.float64) if _is_float(v) else v
                                       for k, v in made.items()})
            comparisons = compare_outputs(spec, case, wrong, actual, dtype, tol)
            nmse = max((c.metrics.get("nmse", 0.0) for c in comparisons), default=0.0)
            if all(c.outcome is Outcome.PASSED for c in comparisons):
                matches.append(variant.id)
                break
            if all(c.outcome is not Outcome.SHAPE_MISMATCH for c in comparisons) and (
                    nearest is None or nmse < nearest[1]):
                nearest = (variant.id, nmse)
    described = {v.id: v.description for v in spec.wrong_variants}
    return {"matches": matches, "descriptions": {m: described[m] for m in matches},
            "nearest": nearest[0] if nearest else None,
            "nearest_nmse": nearest[1] if nearest else None}


def _diagnosis_inputs(fed: dict, dtype: str):
    yield widen(fed)
    if dtype != "float64":
        yield {k: v.astype(np.float32) if isinstance(v, np.ndarray) and is_float_dtype(v.dtype) else v
               for k, v in fed.items()}


def _is_float(value) -> bool:
    return not isinstance(value, (str, bytes)) and is_float_dtype(np.asarray(value).dtype)


def compare_outputs(spec: Spec, case, at: CaseAt, actual: dict, dtype: str, tol=None) -> list:
    tol = tol or tolerance_for(spec, case, dtype)
    return [compare(t.name, actual[t.name], at.expected[t.name], t.dtype, dtype, tol,
                    at.ties.get(t.name), at.bounds.get(t.name)) for t in spec.outputs]
