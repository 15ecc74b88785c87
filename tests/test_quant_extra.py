"""Power-of-two quantizer, W8A16 matmul and the mixed-precision plan: bad input, properties,
and the numba backends against the reference (specs log2_quantize, w8a16_matmul,
mixed_precision_plan)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from llmref import InputError
from llmref.accel.numba_cpu import quant_extra as fast
from llmref.accel.numba_cuda import quant_extra as cuda
from llmref.ref import quant_extra as ref
from llmref.ref.quant import unpack_int4

RNG = np.random.default_rng(20261124)


# ----------------------------------------------------------------------------- log2 quantizer

LOG2 = [ref.log2_quantize, fast.log2_quantize, cuda.log2_quantize]
W8A16 = [ref.w8a16_matmul, fast.w8a16_matmul, cuda.w8a16_matmul]


@pytest.mark.parametrize("impl", LOG2)
@pytest.mark.parametrize("kwargs,name", [
    ({"bits": 1}, "bits"),
    ({"bits": 9}, "bits"),
    ({"granularity": "group"}, "granularity"),
    ({"granularity": "channel", "axis": 2}, "axis"),
])
def test_log2_rejects_bad_arguments(impl, kwargs, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(RNG.normal(size=(3, 8)), **kwargs)


@pytest.mark.parametrize("impl", LOG2)
def test_log2_rejects_nan_and_empty_input(impl):
    x = RNG.normal(size=(3, 8))
    x[0, 1] = np.nan
    with pytest.raises(InputError, match="^x:"):
        impl(x)
    with pytest.raises(InputError, match="^x:"):
        impl(np.zeros((0, 4)))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 12)),
                  elements=st.floats(-1e3, 1e3, allow_nan=False)),
       st.integers(2, 8))
def test_log2_keeps_each_value_within_a_factor_sqrt2(x, bits):
    """The log-domain rounding bound: a kept value is within a factor sqrt(2) of x and has its
    sign; a flushed one lies below s 2^(e_min - 1/2); the slice maximum maps to s exactly."""
    codes, scale, x_hat = ref.log2_quantize(x, bits=bits)
    s = scale.item()
    kept = codes != 0
    ratio = x_hat[kept] / x[kept]
    assert np.all(ratio > 0)
    assert np.all(ratio <= np.sqrt(2) * (1 + 1e-15)) and np.all(ratio >= 1 / np.sqrt(2) * (1 - 1e-15))
    e_min = 1 - ref.log2_levels(bits)
    assert np.all(np.abs(x[~kept]) <= s * 2.0 ** (e_min - 0.5) * (1 + 1e-15))
    if np.any(x != 0):
        assert np.abs(x_hat).max() == s
    fast_codes, fast_scale, fast_hat = fast.log2_quantize(x, bits=bits)
    assert np.array_equal(fast_codes, codes) and np.array_equal(fast_scale, scale)
    assert np.array_equal(fast_hat, x_hat)


# ----------------------------------------------------------------------------- W8A16

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


def test_w8a16_equals_dequantized_matmul():
    """y = x @ (w_q * scales per group)^T, written out independently of the reference."""
    x, w_q, scales = _w8_operands(m=3, k=32, n=5, groups=4)
    w = w_q.astype(np.float64) * np.repeat(scales, 8, axis=1)  # (N, K)
    for impl in (ref.w8a16_matmul, fast.w8a16_matmul):
        np.testing.assert_allclose(impl(x, w_q, scales, group_size=8), x @ w.T, rtol=1e-12)


# ----------------------------------------------------------------------------- mixed precision

def _plan_weights(shapes):
    return np.concatenate([RNG.normal(0, 0.02, size=n * k) for n, k in shapes])


@pytest.mark.parametrize("plan,name", [
    (([0], [4], [16]), "layers"),         # layer 1 missing from the plan
    (([0, 0], [4, 4], [16, 16]), "layers"),
    (([0, 1], [3, 4], [16, 16]), "bits"),
    (([0, 1], [4, 4], [12, 16]), "group_size"),  # 12 does not divide K = 32
    (([0, 1], [2, 4], [2, 16]), "group_size"),   # 2 codes of 2 bits do not fill a byte
    (([0, 1], [4], [16, 16]), "bits"),
])
def test_plan_rejects_bad_plans(plan, name):
    shapes = [(4, 32), (2, 16)]
    with pytest.raises(InputError, match=f"^{name}:"):
        ref.mixed_precision_plan(_plan_weights(shapes), np.array(shapes), *plan)


def test_plan_rejects_weights_of_the_wrong_length():
    shapes = [(4, 32)]
    with pytest.raises(InputError, match="^weights:"):
        ref.mixed_precision_plan(_plan_weights(shapes)[:-1], np.array(shapes), [0], [4], [16])


def test_plan_bytes_match_the_formula_and_the_buffers():
    """data N K b/8, fp16 scales 2 N K/G, zero-points N ceil(K/G b/8); totals add up, the
    buffers have exactly those sizes, and int4 codes unpack to the per-group quantization."""
    shapes = [(4, 32), (3, 64), (2, 16)]
    layers, bits, groups = [2, 0, 1], [8, 4, 2], [16, 32, 8]
    packed, scales, zeros, layer_bytes, total = ref.mixed_precision_plan(
        w := _plan_weights(shapes), np.array(shapes), layers, bits, groups)
    plan = {layer: (b, g) for layer, b, g in zip(layers, bits, groups)}
    expected = []
    for layer, (n, k) in enumerate(shapes):
        b, g = plan[layer]
        counts = [n * k * b // 8, 2 * n * k // g, n * -(-(k // g) * b // 8)]
        expected.append(counts + [sum(counts)])
    assert layer_bytes.tolist() == expected
    assert total.tolist() == [sum(row[3] for row in expected)]
    assert packed.size == sum(row[0] for row in expected)
    assert zeros.size == sum(row[2] for row in expected)
    assert scales.size == sum(row[1] for row in expected) // 2
    # layer 0 is 4-bit: its bytes unpack to the codes of quantize_groups
    q, _, _ = ref.quantize_groups(w[:4 * 32].reshape(4, 32), 4, 32)
    assert np.array_equal(unpack_int4(packed[:64].reshape(4, 16), 32), q)
