"""int4_layouts and the canonical INT4 / INT2 packing (ref/_quant.py): round trips, the nibble
order, bad buffers, and the GPTQ v1 / AWQ converters both ways."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from llmref import InputError
from llmref.accel.cupy.w4a16_matmul import canonical_bytes, kernel_words
from llmref.ref import _quant as packing
from llmref.ref import int4_layouts as ref


def test_packed_buffers_of_the_wrong_length_are_rejected():
    with pytest.raises(InputError, match="^packed:"):
        packing.unpack_int4(np.zeros((3, 5), np.uint8), 12)
    with pytest.raises(InputError, match="^packed:"):
        packing.unpack_int2(np.zeros(3, np.uint8), 16)
    with pytest.raises(InputError, match="^q:"):
        packing.pack_int4(np.full((2, 4), 16))


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.sampled_from([8, 16, 32])),
                  elements=st.integers(0, 15)))
def test_int4_and_int2_pack_round_trip(q):
    packed = packing.pack_int4(q)
    assert packed.shape == (q.shape[0], q.shape[1] // 2)
    assert np.array_equal(packing.unpack_int4(packed, q.shape[1]), q)
    assert np.array_equal(canonical_bytes(kernel_words(packed)), packed)
    q2 = q & 3
    assert np.array_equal(packing.unpack_int2(packing.pack_int2(q2), q.shape[1]), q2)


def test_canonical_nibble_order_is_low_first():
    """byte = q[2j] | q[2j+1] << 4; INT2: q[4j] in bits 0-1."""
    assert packing.pack_int4(np.array([1, 2, 3, 4])).tolist() == [0x21, 0x43]
    assert packing.pack_int2(np.array([1, 2, 3, 0])).tolist() == [1 | 2 << 2 | 3 << 4]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([8, 16]), st.data())
def test_gptq_and_awq_converters_are_exact_both_ways(n8, groups, g, data):
    n, k = 8 * n8, groups * g
    q = data.draw(hnp.arrays(np.uint8, (n, k), elements=st.integers(0, 15)))
    zeros = data.draw(hnp.arrays(np.uint8, (n, groups), elements=st.integers(0, 15)))
    for to, back in ((ref.to_gptq, ref.from_gptq), (ref.to_awq, ref.from_awq)):
        q2, z2 = back(*to(q, zeros))
        assert np.array_equal(q2, q) and np.array_equal(z2, zeros)


def test_gptq_v1_stores_zero_minus_one_and_awq_its_order():
    q = np.tile(np.arange(16, dtype=np.uint8), (8, 2))  # (8, 32)
    zeros = np.array([[0], [1], [8], [15], [3], [4], [5], [6]], np.uint8)  # (8, 1)
    qweight, qzeros = ref.to_gptq(q, zeros)
    assert qweight.shape == (4, 8) and qzeros.shape == (1, 1)
    stored = (qzeros.view(np.uint32)[0, 0] >> (4 * np.arange(8))) & 0xF
    assert stored.tolist() == [15, 0, 7, 14, 2, 3, 4, 5]  # zero 0 wraps to 15 (the v1 quirk)
    assert (qweight.view(np.uint32)[0, 0] >> (4 * np.arange(8)) & 0xF).tolist() == list(range(8))
    q_cols = np.tile(np.arange(8, dtype=np.uint8)[:, None], (1, 32))  # q[n, k] = n
    aw, _ = ref.to_awq(q_cols, zeros)  # (K, N/8): slot i of every word holds column AWQ_ORDER[i]
    assert ((aw.view(np.uint32)[0, 0] >> (4 * np.arange(8))) & 0xF).tolist() == list(ref.AWQ_ORDER)
