"""This project's kernels, judged by llmref: one pytest item per llmref case."""
import os

import pytest

import demo_kernels

SOFTMAX = demo_kernels.softmax_without_max if os.environ.get("LLMREF_DEMO_IMPL") == "wrong" \
    else demo_kernels.softmax


@pytest.mark.llmref("softmax", dtype="float32")
def test_softmax(x, axis):
    return SOFTMAX(x, axis)


@pytest.mark.llmref("rmsnorm", dtype="float16", skip={"wide_rows": "not needed here"})
def test_rmsnorm_with_the_fixture(llmref_case):
    llmref_case.check(demo_kernels.rmsnorm(**llmref_case.inputs, **llmref_case.params))


@pytest.mark.llmref("log_softmax", dtype="float32",
                    xfail={"wide_range": "log of an underflowed probability is -inf"})
def test_log_softmax_known_limitation(x, axis):
    return demo_kernels.log_softmax_via_log(x, axis)
