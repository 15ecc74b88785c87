"""pytest plugin (entry point `pytest11: llmref`): a downstream project's tests become llmref
audits, one test item per case.

Direct form -- the test function IS the implementation; it takes the spec's arguments and
returns the outputs, and the plugin judges them:

    @pytest.mark.llmref("softmax", dtype="bfloat16", xfail={"peaked": "known issue #12"})
    def test_my_softmax(x, axis):
        return my_lib.softmax(x, axis)

Fixture form -- the test takes `llmref_case` (inputs, params, expected, tolerance) and calls
`llmref_case.check(outputs)`, which raises AssertionError with llmref's message:

    @pytest.mark.llmref("rope", dtype="float32")
    def test_rope(llmref_case):
        llmref_case.check(my_lib.rope(**llmref_case.inputs, **llmref_case.params))

Marker arguments: the component, then `dtype` (default float32, or the spec's only dtype),
`cases` (ids; default every case of `tier`), `tier` ("smoke" or "full"), `xfail` and `skip`
(dicts mapping case ids to reasons). Unknown components, dtypes and case ids are collection
errors naming them.
"""
import copy
from dataclasses import dataclass

import pytest

from llmref.audit import DEFAULT_DTYPE, judge, select_cases
from llmref.compare import Outcome
from llmref.spec import load_spec
from llmref.store import load_case
from llmref.tolerance import tolerance_for
from llmref.worker import invoke


@dataclass
class LlmrefCase:
    """One case at one dtype, as a downstream test sees it."""
    component: str
    case: str
    dtype: str
    inputs: dict
    params: dict
    expected: dict
    tolerance: object

    def check(self, outputs):
        """Judge `outputs` (one value, a tuple in spec order, or a dict) like `llmref audit`."""
        spec = load_spec(self.component)
        reply = invoke(lambda **_: outputs, [t.name for t in spec.outputs], {}, {})
        _raise_unless_passed(spec, self, reply)


def pytest_configure(config):
    config.addinivalue_line("markers", "llmref(component, dtype=..., cases=..., tier=..., xfail=..., "
                                       "skip=...): one test per llmref case; see llmref.pytest_plugin")


def _marker_args(marker):
    if not marker.args:
        raise pytest.UsageError("@pytest.mark.llmref needs the component as its first argument")
    spec = load_spec(marker.args[0])
    dtype = marker.kwargs.get("dtype") or (DEFAULT_DTYPE if DEFAULT_DTYPE in spec.dtypes else spec.dtypes[0])
    if dtype not in spec.dtypes:
        raise pytest.UsageError(f"llmref marker: {spec.id} is specified at {list(spec.dtypes)}, not {dtype!r}")
    cases = select_cases(spec, marker.kwargs.get("cases"), marker.kwargs.get("tier", "smoke"))
    known = {c.id for c in spec.cases}
    for key in ("xfail", "skip"):
        unknown = set(marker.kwargs.get(key) or {}) - known
        if unknown:
            raise pytest.UsageError(f"llmref marker {key}: {spec.id} has no case {sorted(unknown)}")
    return spec, dtype, cases


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("llmref")
    if marker is None:
        return
    spec, dtype, cases = _marker_args(marker)
    xfail, skip = marker.kwargs.get("xfail") or {}, marker.kwargs.get("skip") or {}
    # Direct form: the spec's argument names are parametrized too (with placeholders), so
    # pytest does not look for fixtures of those names; the values are loaded at call time.
    names = [n for n in [t.name for t in spec.inputs] + list(spec.params) if n in metafunc.fixturenames]
    values = []
    for case in cases:
        marks = []
        if case.id in xfail:
            marks.append(pytest.mark.xfail(reason=xfail[case.id], strict=True))
        if case.id in skip:
            marks.append(pytest.mark.skip(reason=skip[case.id]))
        values.append(pytest.param((spec.id, case.id, dtype), *[None] * len(names), marks=marks,
                                   id=f"{case.id}[{dtype}]"))
    if "_llmref_case_key" not in metafunc.fixturenames:  # the key travels with every item
        metafunc.fixturenames.append("_llmref_case_key")
    metafunc.parametrize(["_llmref_case_key", *names], values)


@pytest.fixture
def llmref_case(_llmref_case_key) -> LlmrefCase:
    component, case_id, dtype = _llmref_case_key
    spec = load_spec(component)
    case = spec.case(case_id)
    at = load_case(spec, case, dtype)
    return LlmrefCase(component, case_id, dtype, at.inputs, copy.deepcopy(case.params), at.expected,
                      tolerance_for(spec, case, dtype))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Direct form: call the test with the case's inputs and params, then judge its return."""
    callspec = getattr(pyfuncitem, "callspec", None)
    if callspec is None or "_llmref_case_key" not in callspec.params or "llmref_case" in pyfuncitem.fixturenames:
        return None
    component, case_id, dtype = callspec.params["_llmref_case_key"]
    spec = load_spec(component)
    case = spec.case(case_id)
    at = load_case(spec, case, dtype)
    reply = invoke(pyfuncitem.obj, [t.name for t in spec.outputs], at.inputs, case.params)
    _raise_unless_passed(spec, LlmrefCase(component, case_id, dtype, at.inputs, case.params,
                                          at.expected, None), reply, at)
    return True


def _raise_unless_passed(spec, c: LlmrefCase, reply, at=None):
    case = spec.case(c.case)
    if at is None:
        at = load_case(spec, case, c.dtype)
    result = judge(spec, case, at, c.dtype, reply, f"llmref audit {spec.id} ... --case {case.id} --dtype {c.dtype}")
    if result.outcome is Outcome.UNSUPPORTED:
        pytest.skip(f"UNSUPPORTED: {result.detail}")
    if result.outcome is not Outcome.PASSED:
        raise AssertionError(f"llmref {spec.id}/{case.id} at {c.dtype}: {result.outcome.value}: {result.detail}")
