"""merge_attention_states: associative merging equals attention over the union, bad input,
no rows."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmref.accel.numba_cpu import merge_attention_states as numba_cpu_merge
from llmref.accel.numba_cuda import merge_attention_states as numba_cuda_merge
from llmref.errors import InputError
from llmref.ref.merge_attention_states import merge_attention_states
from llmref.ref.online_attention import online_attention
from test_sdpa import BACKENDS, qkv

MERGE = [merge_attention_states, numba_cpu_merge.merge_attention_states,
         numba_cuda_merge.merge_attention_states]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(0, 12), min_size=2, max_size=2))
def test_merge_is_associative_and_equals_attention_over_the_union(seed, cuts):
    """Three partial states over disjoint key sets (one may be empty) merge, in either order,
    to attention over all keys."""
    rng = np.random.default_rng(seed)
    q, k, v = qkv(rng, lk=12)
    lo, hi = sorted(cuts)
    parts = []
    for keys in (slice(0, lo), slice(lo, hi), slice(hi, 12)):
        only = np.zeros((2, 12), bool)
        only[:, keys] = True
        parts.append(online_attention(q, k, v, only))
    (oa, la), (ob, lb), (oc, lc) = parts
    left = merge_attention_states(*merge_attention_states(oa, la, ob, lb), oc, lc)
    right = merge_attention_states(oa, la, *merge_attention_states(ob, lb, oc, lc))
    full = online_attention(q, k, v, np.ones((2, 12), bool))
    for merged in (left, right):
        np.testing.assert_allclose(merged[0], full[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(merged[1], full[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", MERGE, ids=BACKENDS)
def test_bad_merge_input_names_the_argument(impl):
    out, lse = np.zeros((2, 3, 4)), np.zeros((2, 3))
    with pytest.raises(InputError, match="^lse_b:"):
        impl(out, lse, out, lse[:, :2])
    with pytest.raises(InputError, match="^out_b:"):
        impl(out, lse, out[..., :3], lse)
    with pytest.raises(InputError, match="^out_a:"):
        impl(out[..., :0], lse, out[..., :0], lse)  # value width 0


@pytest.mark.parametrize("impl", MERGE, ids=BACKENDS)
def test_merging_no_rows_is_empty(impl):
    out, lse = impl(np.zeros((0, 3, 4), np.float32), np.zeros((0, 3), np.float32),
                    np.zeros((0, 3, 4), np.float32), np.zeros((0, 3), np.float32))
    assert out.shape == (0, 3, 4) and lse.shape == (0, 3) and out.dtype == np.float32
