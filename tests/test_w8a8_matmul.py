"""w8a8_matmul: bad operands on every backend."""
import numpy as np
import pytest

from llmref import InputError
from llmref.accel.numba_cpu import w8a8_matmul as fast
from llmref.ref import w8a8_matmul as ref


@pytest.mark.parametrize("impl", [ref.w8a8_matmul, fast.w8a8_matmul])
@pytest.mark.parametrize("x_q,w_q,x_scale,w_scale,name", [
    (np.zeros((2, 4), np.int8), np.zeros((3, 5), np.int8), np.ones(2), np.ones(3), "w_q"),
    (np.zeros((2, 4), np.int8), np.zeros((3, 4), np.int8), np.ones(3), np.ones(3), "x_scale"),
    (np.full((2, 4), 200, np.int16), np.zeros((3, 4), np.int8), np.ones(2), np.ones(3), "x_q"),  # out of int8
    (np.zeros((0, 4), np.int8), np.zeros((3, 4), np.int8), np.ones(0), np.ones(3), "x_q"),
    (np.zeros((2, 0), np.int8), np.zeros((3, 0), np.int8), np.ones(2), np.ones(3), "x_q"),
    (np.zeros((2, 4), np.int8), np.zeros((0, 4), np.int8), np.ones(2), np.ones(0), "w_q"),
])
def test_w8a8_rejects_bad_operands(impl, x_q, w_q, x_scale, w_scale, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(x_q, w_q, x_scale, w_scale)


def test_backends_validate_through_the_reference_checker():
    """Every accelerated entry point calls w8a8_matmul_args before any kernel; none raises itself."""
    from pathlib import Path

    for module in (fast,):
        text = Path(module.__file__).read_text()
        assert "w8a8_matmul_args(" in text and "raise InputError" not in text, module.__name__
