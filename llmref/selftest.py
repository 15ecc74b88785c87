"""Discrimination self-test: every wrong variant a spec lists must fail its audit.

A variant is caught when its audit does not pass and, if the spec names `catches`, at least
one of those cases fails (so the case meant to catch it really does).
"""
from llmref.audit import audit
from llmref.compare import Outcome
from llmref.spec import load_spec, resolve


def audit_variant(spec, variant):
    report = audit(spec, resolve(variant.impl), dtype=variant.dtype, label=variant.impl)
    failed = {r.case for r in report.results if r.outcome not in (Outcome.PASSED, Outcome.UNSUPPORTED)}
    caught = not report.passed and (not variant.catches or bool(failed & set(variant.catches)))
    return report, caught


def run_selftest(components):
    for component in components:
        spec = load_spec(component)
        for variant in spec.wrong_variants:
            report, caught = audit_variant(spec, variant)
            yield spec, variant, report, caught
