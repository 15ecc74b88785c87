"""Trivial mutants: outputs that every case, at every dtype, must reject.

A tolerance that lets one of these through has no teeth on that case. For each output of a
case -- the other outputs left correct -- the mutants are:

  zeros        all zeros (all False; the empty string)
  constant     every element the mean of the expected output (the most common value for
               integers and booleans; the first character repeated, for text)
  passthrough  the first input whose shape equals the output's, cast to the output's dtype
               (for text: the first text input)
  permutation  the expected elements (characters) in a random order
  noise        uniform noise over the expected output's range (random characters from it)

A mutant that is exactly the expected output (a constant output, a scalar, no input of the
output's shape) is not applicable. The control `expected` -- the expected output itself,
rounded to the evaluation dtype -- must pass: it proves the bound is not so tight that the
correctly rounded answer fails.
"""
from dataclasses import dataclass

import numpy as np

from llmref.audit import judge
from llmref.cases import CaseAt, case_rng
from llmref.compare import Outcome
from llmref.dtypes import TEXT_KINDS, round_to
from llmref.worker import Reply

MUTANTS = ("zeros", "constant", "passthrough", "permutation", "noise")


@dataclass
class MutantCheck:
    case: str
    dtype: str
    output: str
    mutant: str
    outcome: Outcome | None  # None: not applicable
    detail: str = ""

    @property
    def ok(self) -> bool:
        """The control must pass; every applicable mutant must fail."""
        if self.outcome is None:
            return True
        return (self.outcome is Outcome.PASSED) == (self.mutant == "expected")


def check_case(spec, case, at: CaseAt, dtype: str) -> list:
    """The control and every trivial mutant, for every output of one case at one dtype (none
    for a case the spec rejects: it has no outputs to mutate)."""
    if at.error is not None:
        return []
    kinds = {t.name: t.dtype for t in spec.outputs}
    correct = {name: as_returned(value, kinds[name], dtype) for name, value in at.expected.items()}
    checks = []
    for t in spec.outputs:
        for mutant in ("expected",) + MUTANTS:
            rng = case_rng(spec.id, f"{case.id}/{dtype}/{t.name}/{mutant}")
            value = correct[t.name] if mutant == "expected" else make_mutant(
                mutant, spec, at, t, correct[t.name], rng)
            if mutant != "expected" and (value is None or _same(value, correct[t.name])):
                checks.append(MutantCheck(case.id, dtype, t.name, mutant, None))
                continue
            result = judge(spec, case, at, dtype, Reply("ok", {**correct, t.name: value}), "")
            checks.append(MutantCheck(case.id, dtype, t.name, mutant, result.outcome, result.detail))
    return checks


def as_returned(value, kind: str, dtype: str):
    """An expected output as a correct implementation returns it at `dtype`."""
    if kind in TEXT_KINDS:
        return value
    if kind == "float":
        return round_to(value, dtype)
    if kind in ("float64", "float32"):
        return round_to(value, kind)
    return np.asarray(value)


def make_mutant(mutant, spec, at, tensor, expected, rng):
    if tensor.dtype in TEXT_KINDS:
        return _text_mutant(mutant, spec, at, tensor, expected, rng)
    e = np.asarray(expected)
    if mutant == "zeros":
        return np.zeros_like(e)
    if mutant == "passthrough":
        source = next((v for t in spec.inputs for v in [at.inputs[t.name]]
                       if isinstance(v, np.ndarray) and v.shape == e.shape), None)
        return None if source is None else _cast_like(np.asarray(source, np.float64), e)
    if e.size == 0:
        return None
    if mutant == "permutation":
        return rng.permutation(e.reshape(-1)).reshape(e.shape)
    wide = e.astype(np.float64)
    finite = wide[np.isfinite(wide)]
    if finite.size == 0:
        return None
    if mutant == "constant":
        if e.dtype.kind in "biu":
            values, counts = np.unique(e, return_counts=True)
            return np.full_like(e, values[np.argmax(counts)])
        return _cast_like(np.full(e.shape, finite.mean()), e)
    low, high = finite.min(), finite.max()  # noise
    if e.dtype.kind == "b":
        return rng.random(e.shape) < 0.5
    if e.dtype.kind in "iu":
        return rng.integers(int(low), int(high) + 1, size=e.shape).astype(e.dtype)
    return _cast_like(rng.uniform(low, high, size=e.shape) if high > low else np.full(e.shape, low), e)


def _text_mutant(mutant, spec, at, tensor, expected, rng):
    if mutant == "zeros":
        return expected[:0]
    if mutant == "passthrough":
        return next((at.inputs[t.name] for t in spec.inputs if t.dtype == tensor.dtype), None)
    if not expected:
        return None
    if mutant == "constant":
        return expected[:1] * len(expected)
    items = list(expected)
    if mutant == "permutation":
        order = rng.permutation(len(items))
    else:  # noise: random picks from the expected alphabet
        order = rng.integers(0, len(items), size=len(items))
    picked = [items[i] for i in order]
    return "".join(picked) if isinstance(expected, str) else bytes(picked)


def _cast_like(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    if like.dtype.kind == "b":
        return values != 0
    if like.dtype.kind in "iu":
        return np.clip(np.round(values), np.iinfo(like.dtype).min, np.iinfo(like.dtype).max).astype(like.dtype)
    return round_to(values, str(like.dtype)) if str(like.dtype) != "float64" else values


def _same(a, b) -> bool:
    if isinstance(b, (str, bytes)):
        return a == b
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "biu" and b.dtype.kind in "biu":
        return bool(np.array_equal(a, b))
    return bool(np.array_equal(a.astype(np.float64), b.astype(np.float64), equal_nan=True))
