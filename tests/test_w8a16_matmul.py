"""w8a16_matmul: bad operands on every backend, and the product written out independently."""
import numpy as np
import pytest

from llmref import InputError
from llmref.accel.numba_cpu import w8a16_matmul as fast
from llmref.accel.numba_cuda import w8a16_matmul as cuda
from llmref.ref import w8a16_matmul as ref

RNG = np.random.default_rng(20261124)
W8A16 = [ref.w8a16_matmul, fast.w8a16_matmul, cuda.w8a16_matmul]


def _w8_operands(m=2, k=16, n=3, groups=2):
    return (RNG.normal(size=(m, k)), RNG.integers(-128, 128, size=(n, k)).astype(np.int8),
            RNG.uniform(0.001, 0.02, size=(n, groups)))


@pytest.mark.parametrize("impl", W8A16)
@pytest.mark.parametrize("change,name", [
    (lambda x, w, s: (x, w, s, 5), "group_size"),
    (lambda x, w, s: (x, w, s, -8), "group_size"),
    (lambda x, w, s: (x, w.astype(np.int16), s, 8), "w_q"),
    (lambda x, w, s: (x[:, :8], w, s, 8), "w_q"),
    (lambda x, w, s: (x, w, s[:, :1], 8), "scales"),
    (lambda x, w, s: (x[:0], w, s, 8), "x"),  # M = 0
    (lambda x, w, s: (x[:, :0], w[:, :0], s[:, :0], 0), "x"),  # K = 0
    (lambda x, w, s: (x, w[:0], s[:0], 8), "w_q"),  # N = 0
])
def test_w8a16_rejects_bad_operands(impl, change, name):
    x, w_q, scales, group_size = change(*_w8_operands())
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(x, w_q, scales, group_size=group_size)


def test_backends_validate_through_the_reference_checker():
    """Every accelerated entry point calls w8a16_matmul_args before any kernel; none raises itself."""
    from pathlib import Path

    for module in (fast, cuda,):
        text = Path(module.__file__).read_text()
        assert "w8a16_matmul_args(" in text and "raise InputError" not in text, module.__name__


def test_w8a16_equals_dequantized_matmul():
    """y = x @ (w_q * scales per group)^T, written out independently of the reference."""
    x, w_q, scales = _w8_operands(m=3, k=32, n=5, groups=4)
    w = w_q.astype(np.float64) * np.repeat(scales, 8, axis=1)  # (N, K)
    for impl in (ref.w8a16_matmul, fast.w8a16_matmul):
        np.testing.assert_allclose(impl(x, w_q, scales, group_size=8), x @ w.T, rtol=1e-12)
