"""Adapters let a function written for a framework's tensors be audited as it is; a
declaration says what it supports; a signature that cannot take the spec's names is one
error before any case runs."""
import numpy as np
import pytest

import llmref
from llmref.adapters import declare, dlpack_adapter, numpy_to_torch, torch_adapter, torch_to_numpy
from llmref.compare import Outcome
from llmref.dtypes import FORMATS, round_to
from llmref.errors import InputError

torch = pytest.importorskip("torch", reason="the adapters are exercised with torch (crosscheck extra)")
pytestmark = pytest.mark.crosscheck

DTYPES = ("float64", "float32", "float16", "bfloat16")


@torch_adapter
def torch_softmax(x, axis):
    return torch.softmax(x, dim=axis)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_readme_example_passes_at_every_dtype(dtype):
    report = llmref.audit("softmax", torch_softmax, dtype=dtype)
    assert report.passed, report.failures()
    assert report.counts() == {"PASSED": len(report.results)}


def test_bfloat16_crosses_to_torch_by_its_bits_without_a_copy():
    x = round_to(np.linspace(-3, 3, 11), "bfloat16")
    t = numpy_to_torch(x)
    assert t.dtype == torch.bfloat16
    assert np.array_equal(t.view(torch.int16).numpy(), x.view(np.int16))
    x.view(np.uint16)[0] = FORMATS["bfloat16"].numpy.type(7.0).view(np.uint16)
    assert float(t[0]) == 7.0  # shares memory
    back = torch_to_numpy(t)
    assert back.dtype == FORMATS["bfloat16"].numpy and np.array_equal(back.view(np.uint16), x.view(np.uint16))


def test_a_plain_function_may_return_torch_tensors_bfloat16_included():
    def returns_tensor(x, axis):
        return torch.softmax(numpy_to_torch(x), dim=axis)

    assert llmref.audit("softmax", returns_tensor, dtype="bfloat16").passed


def test_a_misspelt_argument_is_one_error_naming_the_spec_names():
    @torch_adapter
    def softmax_dim(x, dim):
        return torch.softmax(x, dim=dim)

    with pytest.raises(InputError) as info:
        llmref.audit("softmax", softmax_dim)
    message = str(info.value)
    assert "does not accept ['axis']" in message and "requires ['dim']" in message
    assert "the spec calls it with (x, axis)" in message


def test_declared_dtypes_cases_and_skips_are_unsupported_not_failed():
    @torch_adapter(dtypes=["float32"], skip={"peaked": "not this one"})
    def narrow(x, axis):
        return torch.softmax(x, dim=axis)

    report = llmref.audit("softmax", narrow, dtype="bfloat16")
    assert report.counts() == {"UNSUPPORTED": len(report.results)}
    assert "declared dtypes are ['float32']" in report.results[0].detail
    report = llmref.audit("softmax", narrow, dtype="float32")
    assert report.passed
    assert next(r for r in report.results if r.case == "peaked").detail == "not this one"

    @declare(cases=["random_rows"])
    def only_one(x, axis):
        return llmref.ref.softmax.softmax(x, axis)

    outcomes = {r.case: r.outcome for r in llmref.audit("softmax", only_one).results}
    assert outcomes.pop("random_rows") is Outcome.PASSED
    assert set(outcomes.values()) == {Outcome.UNSUPPORTED}


def test_an_unavailable_device_is_unsupported_with_the_reason():
    @torch_adapter(device="cuda")
    def on_gpu(x, axis):
        return torch.softmax(x, dim=axis)

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device, so nothing is unavailable")
    report = llmref.audit("softmax", on_gpu)
    assert {r.outcome for r in report.results} == {Outcome.UNSUPPORTED}
    assert "torch device 'cuda' is not available here" in report.results[0].detail


def test_dlpack_adapter_takes_any_producer():
    @dlpack_adapter(from_numpy=lambda a: torch.from_numpy(np.ascontiguousarray(a)))
    def via_dlpack(x, axis):
        return torch.softmax(x, dim=axis)

    assert llmref.audit("softmax", via_dlpack, dtype="float32").passed


def test_adapters_cannot_pass_by_returning_the_golden():
    """The adapter's output goes through llmref's comparison like any other: a wrong torch
    function fails."""
    @torch_adapter
    def log_of_softmax(x, axis):
        return torch.log(torch.softmax(x, dim=axis))

    report = llmref.audit("log_softmax", log_of_softmax, dtype="float32")
    assert not report.passed
    assert any("log_of_softmax" in (r.diagnosis or {}).get("matches", []) for r in report.failures())
