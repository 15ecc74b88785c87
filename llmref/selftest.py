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


SCHEMA = "llmref-selftest/1"


def selftest_document(components, dtypes=None, tier="smoke") -> dict:
    """Everything `llmref selftest` found, as JSON (schema llmref-selftest/1): per component
    and dtype the trivial mutants (counts, and any that escaped), per wrong variant whether it
    was caught, and the kill matrix -- which case rejects which variant or mutant."""
    document = {"schema": SCHEMA, "tier": tier, "components": [], "escaped": 0}
    for component in components:
        spec = load_spec(component)
        checks = run_mutants(component, dtypes, tier)
        entry = {"component": component, "dtypes": {}, "variants": [], "matrix": {}}
        for dtype in dict.fromkeys(c.dtype for c in checks):
            mine = [c for c in checks if c.dtype == dtype]
            applicable = [c for c in mine if c.outcome is not None and c.mutant != "expected"]
            escaped = [c for c in mine if not c.ok]
            entry["dtypes"][dtype] = {
                "mutants": len(applicable),
                "rejected": sum(c.ok for c in applicable),
                "not_applicable": sum(c.outcome is None for c in mine),
                "control_passed": all(c.ok for c in mine if c.mutant == "expected"),
                "escaped": [{"case": c.case, "output": c.output, "mutant": c.mutant,
                             "outcome": c.outcome.value} for c in escaped]}
            document["escaped"] += len(escaped)
            for c in applicable:
                killed = entry["matrix"].setdefault(f"mutant:{c.mutant}", {}).setdefault(c.case, [])
                if c.ok and dtype not in killed:
                    killed.append(dtype)
        for result in run_variants([component]):
            failed = {r.case for r in result.report.results if r.outcome not in NOT_FAILED}
            entry["variants"].append({"id": result.variant.id, "dtype": result.variant.dtype,
                                      "caught": result.caught, "counts": result.report.counts(),
                                      "catches": list(result.variant.catches)})
            entry["matrix"][f"variant:{result.variant.id}"] = {
                case.id: [result.variant.dtype] if case.id in failed else []
                for case in select_cases(spec, None, "smoke")}
            document["escaped"] += not result.caught
        document["components"].append(entry)
    bounds = largest_bounds(components, tier)
    document["largest_rtol"] = {d: {"rtol": r, "component": c, "case": k}
                                for d, (r, c, k) in bounds.items()}
    return document


def selftest_junit(document) -> str:
    """One <testsuite> per component; a <testcase> per dtype's mutants and per wrong variant."""
    import xml.etree.ElementTree as ET

    suites = ET.Element("testsuites", {"name": "llmref selftest"})
    for entry in document["components"]:
        cases = []
        for dtype, d in entry["dtypes"].items():
            problem = "; ".join(f"{e['mutant']} on {e['case']}/{e['output']} -> {e['outcome']}"
                                for e in d["escaped"])
            cases.append((f"trivial_mutants[{dtype}]", problem))
        for v in entry["variants"]:
            cases.append((f"wrong_variant:{v['id']}[{v['dtype']}]",
                          "" if v["caught"] else f"not rejected: {v['counts']}"))
        suite = ET.SubElement(suites, "testsuite", {
            "name": entry["component"], "tests": str(len(cases)),
            "failures": str(sum(bool(p) for _, p in cases)), "errors": "0", "skipped": "0"})
        for name, problem in cases:
            case = ET.SubElement(suite, "testcase", {"classname": f"llmref.selftest.{entry['component']}",
                                                     "name": name})
            if problem:
                ET.SubElement(case, "failure", {"type": "ESCAPED", "message": problem})
    return ET.tostring(suites, encoding="unicode")
