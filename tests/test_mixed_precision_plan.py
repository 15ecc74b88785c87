"""mixed_precision_plan: bad plans, and the byte counts against the formula and the buffers."""
import numpy as np
import pytest

from llmref import InputError
from llmref.ref import mixed_precision_plan as ref
from llmref.ref._quant import unpack_int4

RNG = np.random.default_rng(20261124)


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
