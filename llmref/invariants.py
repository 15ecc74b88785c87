"""Invariants: properties an implementation must have that need no golden.

A spec lists them under `invariants:`; each runs the implementation more than once on a
smoke case, transformed, and compares its outputs with each other:

  {id: deterministic}             built in: a second run on the same inputs gives the same
                                  bits (specs whose operation is deterministic by definition)
  {id: batch_independent, dim: B} built in: each entry of the batch dimension, run alone,
                                  gives its slice of the batched outputs, whatever else is in
                                  the batch (every output must lead with that dim)
  {id: <name>, check: module:function, description: ...}
                                  a family's own, e.g. paged attention unchanged when the
                                  physical blocks are permuted or the block size changes;
                                  called check(fn, spec, case, at, dtype) -> (ok, detail)

Two runs of a correct implementation each lie within the case's tolerance of the exact
answer, so they lie within twice that of each other: `agree` judges with rtol doubled (and
any per-element bound doubled); `identical` asks for the same bits, for properties where the
computation itself is the same (the same values in the same order).
"""
from dataclasses import dataclass

import numpy as np

from llmref.audit import select_cases
from llmref.cases import call
from llmref.compare import Outcome, compare
from llmref.dtypes import TEXT_KINDS
from llmref.spec import resolve
from llmref.store import load_case
from llmref.tolerance import Tolerance, tolerance_for


@dataclass
class InvariantResult:
    invariant: str
    case: str
    dtype: str
    ok: bool
    detail: str = ""

    def to_dict(self):
        return {"invariant": self.invariant, "case": self.case, "dtype": self.dtype, "ok": self.ok,
                "detail": self.detail}


def run_invariants(spec, fn, dtype: str, cases=None) -> list:
    """Every invariant of `spec` on its smoke cases (or `cases`) at `dtype`."""
    results = []
    for inv in spec.invariants or ():
        for case in select_cases(spec, cases, "smoke"):
            at = load_case(spec, case, dtype)
            if at.error is not None:
                continue
            try:
                ok, detail = _check(inv, fn, spec, case, at, dtype)
            except Exception as exc:  # the implementation failed on a transformed input
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            if ok is not None:  # None: does not apply to this case (a batch of one)
                results.append(InvariantResult(inv["id"], case.id, dtype, ok, detail))
    return results


def _check(inv, fn, spec, case, at, dtype):
    if inv["id"] == "deterministic":
        return identical(spec, run(fn, spec, at.inputs, case.params), run(fn, spec, at.inputs, case.params))
    if inv["id"] == "batch_independent":
        return _batch_independent(fn, spec, case, at, dtype, inv["dim"])
    return resolve(inv["check"])(fn, spec, case, at, dtype)


def run(fn, spec, inputs: dict, params: dict) -> dict:
    """The implementation's outputs as arrays (copies of the inputs are passed)."""
    copies = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
    from llmref.adapters import as_numpy

    return {k: as_numpy(v) for k, v in call(fn, spec, copies, params).items()}


def identical(spec, first: dict, second: dict):
    """(ok, detail): the same bits in every output."""
    for t in spec.outputs:
        a, b = first[t.name], second[t.name]
        same = a == b if t.dtype in TEXT_KINDS else (
            np.shape(a) == np.shape(b) and np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
        if not same:
            return False, f"{t.name}: the two runs differ"
    return True, ""


def agree(spec, case, dtype, first: dict, second: dict, bounds=None):
    """(ok, detail): the outputs of two runs within twice the case's tolerance of each other."""
    tol = tolerance_for(spec, case, dtype)
    doubled = tol if tol.exact else Tolerance(rtol=min(2 * tol.rtol, 0.125), reason="two runs")
    for t in spec.outputs:
        bound = None if bounds is None or t.name not in bounds else 2 * np.asarray(bounds[t.name])
        expected = first[t.name]
        if t.dtype not in TEXT_KINDS:
            expected = np.asarray(expected).astype(np.float64) if np.asarray(expected).dtype.kind in "fV" \
                else np.asarray(expected)
        c = compare(t.name, second[t.name], expected, t.dtype, dtype, doubled, bound=bound)
        if c.outcome is not Outcome.PASSED:
            return False, f"{t.name}: {c.detail}"
    return True, ""


def _batch_independent(fn, spec, case, at, dtype, dim):
    size = case.dims.get(dim)
    if not isinstance(size, int):
        size = next((np.shape(at.inputs[t.name])[0] for t in spec.inputs
                     if t.shape and t.shape[0] == dim and np.ndim(at.inputs[t.name])), 0)
    if size < 2:
        return None, ""
    rows = [t.name for t in spec.inputs if t.shape and t.shape[0] == dim]
    if any(np.ndim(at.inputs[name]) != len(t.shape) for t in spec.inputs for name in [t.name] if name in rows):
        return None, ""  # a case that reshapes its inputs (another axis normalised...) is not batched
    batched = run(fn, spec, at.inputs, case.params)
    for i in (0, size - 1):
        alone = {k: (v[i:i + 1] if k in rows else v) for k, v in at.inputs.items()}
        single = run(fn, spec, alone, case.params)
        sliced = {k: np.asarray(v)[i:i + 1] for k, v in batched.items()}
        ok, detail = agree(spec, case, dtype, sliced, single,
                           {k: np.asarray(v)[i:i + 1] for k, v in at.bounds.items()})
        if not ok:
            return False, f"entry {i} of {dim} = {size}, run alone: {detail}"
    return True, ""
