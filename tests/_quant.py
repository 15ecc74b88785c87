"""What the quantization families' tests share: a float32 audit that counts the tie flips a
correct implementation needed, and the checks every tie-aware spec's masks must pass."""
import numpy as np

import llmref
from llmref.cases import compute_at, make_inputs
from llmref.spec import load_spec


def audit_flips(component, fn, tier="full", cases=None):
    """The float32 audit of fn and the tie flips it needed, {case: flips}."""
    report = llmref.audit(component, fn, dtype="float32", tier=tier, cases=cases)
    flips = {r.case: sum(c.metrics.get("tie_flips", 0) for c in r.comparisons) for r in report.results}
    return report, flips


def failures(report):
    return [(r.case, r.detail[:160]) for r in report.failures()]


def assert_exact_ties_unmasked(component, case_id):
    """Computed exactly (scale 1 or a power of two), the ties stay exact: only the rule passes."""
    spec = load_spec(component)
    case = spec.case(case_id)
    at = compute_at(spec, case, make_inputs(spec, case), "float32")
    assert at.ties and not any(np.asarray(mask).any() for mask, _ in at.ties.values())


def assert_masks_mark_only_differing_alternatives(component):
    """Every masked element's alternative differs from the expected value, and on random cases
    the masks stay a small fraction (the model does not blanket whole outputs; the tie cases
    put every element next to a tie on purpose)."""
    spec = load_spec(component)
    for case in spec.cases:
        at = compute_at(spec, case, make_inputs(spec, case), "float32")
        random = case.generator is None and all("dist" in recipe for recipe in case.inputs.values())
        for name, (mask, alternative) in at.ties.items():
            mask = np.asarray(mask)
            expected = np.asarray(at.expected[name], np.float64)
            assert not (mask & (np.asarray(alternative, np.float64) == expected)).any(), (case.id, name)
            if random:
                assert mask.sum() <= max(2, 1e-3 * mask.size), (case.id, name, int(mask.sum()))
