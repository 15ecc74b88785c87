"""Discrimination self-test: proof that the cases and tolerances have teeth.

Two parts, per component:
- wrong variants: every realistic bug the spec lists must fail its audit, and where the
  spec names the cases meant to catch it (`catches`), at least one of those must fail;
- trivial mutants (llmref.mutants): on every case, at every dtype the spec declares, every
  applicable mutant of every output must fail, and the correctly rounded expected output
  must pass.
"""
from dataclasses import dataclass

from llmref.audit import NOT_FAILED, audit, select_cases
from llmref.mutants import check_case
from llmref.spec import load_spec, resolve
from llmref.store import load_case
from llmref.tolerance import tolerance_for


@dataclass
class VariantResult:
    component: str
    variant: object  # llmref.spec.WrongVariant
    report: object   # llmref.audit.Report
    caught: bool


def audit_variant(spec, variant):
    report = audit(spec, resolve(variant.impl), dtype=variant.dtype, label=variant.impl)
    failed = {r.case for r in report.results if r.outcome not in NOT_FAILED}
    caught = not report.passed and (not variant.catches or bool(failed & set(variant.catches)))
    return report, caught


def run_variants(components):
    for component in components:
        spec = load_spec(component)
        for variant in spec.wrong_variants:
            report, caught = audit_variant(spec, variant)
            yield VariantResult(spec.id, variant, report, caught)


def run_mutants(component, dtypes=None, tier="smoke"):
    """Every MutantCheck of one component, at each of its dtypes (or those given)."""
    spec = load_spec(component)
    checks = []
    for dtype in spec.dtypes:
        if dtypes and dtype not in dtypes:
            continue
        for case in select_cases(spec, None, tier):
            checks += check_case(spec, case, load_case(spec, case, dtype), dtype)
    return checks


def largest_bounds(components, tier="smoke") -> dict:
    """{dtype: (rtol, component, case)}: the loosest relative bound at each dtype."""
    worst = {}
    for component in components:
        spec = load_spec(component)
        for case in select_cases(spec, None, tier):
            for dtype in spec.dtypes:
                rtol = tolerance_for(spec, case, dtype).rtol
                if rtol > worst.get(dtype, (0.0,))[0]:
                    worst[dtype] = (rtol, spec.id, case.id)
    return worst
