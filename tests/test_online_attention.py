"""online_attention: equal to direct attention, fully masked rows, bad input (the argument
checks are sdpa's: BAD from test_sdpa), empty batches."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmref.accel.numba_cpu import online_attention as numba_cpu_online
from llmref.accel.numba_cuda import online_attention as numba_cuda_online
from llmref.errors import InputError
from llmref.ref.online_attention import online_attention
from llmref.ref.sdpa import sdpa
from test_sdpa import BACKENDS, BAD, BAD_IDS, attention_args, qkv

ONLINE = [online_attention, numba_cpu_online.online_attention, numba_cuda_online.online_attention]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lq=st.integers(1, 6), lk=st.integers(1, 9),
       group=st.sampled_from([1, 2, 3]), causal=st.booleans(), window=st.integers(0, 4),
       block_size=st.integers(1, 10))
def test_online_attention_equals_direct(seed, lq, lk, group, causal, window, block_size):
    rng = np.random.default_rng(seed)
    q, k, v = qkv(rng, hq=2 * group, hkv=2, lq=lq, lk=lk, dv=5)
    mask = rng.random((2, lk)) < 0.8
    direct = sdpa(q, k, v, mask, causal=causal, window=window)
    out, lse = online_attention(q, k, v, mask, causal=causal, window=window,
                                block_size=block_size)
    np.testing.assert_allclose(out, direct, rtol=1e-12, atol=1e-12)
    assert np.all(out[np.isneginf(lse)] == 0)  # rows with no key left


def test_fully_masked_rows_are_zero_with_lse_minus_inf():
    rng = np.random.default_rng(0)
    q, k, v = qkv(rng, lq=5, lk=3)
    out, lse = online_attention(q, k, v, np.ones((2, 3), bool), causal=True)
    assert np.all(out[:, :, :2] == 0) and np.all(np.isneginf(lse[:, :, :2]))
    assert np.all(np.isfinite(lse[:, :, 2:]))
    np.testing.assert_array_equal(sdpa(q, k, v, np.zeros((2, 3), bool)), 0.0)


@pytest.mark.parametrize("impl", ONLINE, ids=BACKENDS)
@pytest.mark.parametrize("name,override", BAD, ids=BAD_IDS)
def test_bad_input_names_the_argument(impl, name, override):
    """Every backend validates through the reference's online_attention_args (sdpa_args)
    before any kernel runs."""
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(**attention_args(**override))


@pytest.mark.parametrize("impl", ONLINE, ids=BACKENDS)
def test_bad_block_size_names_the_argument(impl):
    with pytest.raises(InputError, match="^block_size:"):
        impl(**attention_args(), block_size=0)


@pytest.mark.parametrize("impl", ONLINE, ids=BACKENDS)
@pytest.mark.parametrize("b,lq,lk", [(0, 3, 4), (1, 0, 4), (2, 3, 0)],
                         ids=["batch0", "queries0", "keys0"])
def test_empty_batches_give_empty_or_keyless_outputs(impl, b, lq, lk):
    """No sequence or no query: an empty output of the right shape, as torch gives. No key:
    every row is fully masked, so out 0 and lse -inf (the fully masked convention)."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=s).astype(np.float32)
               for s in ((b, 4, lq, 8), (b, 2, lk, 8), (b, 2, lk, 6)))
    out, lse = impl(q, k, v, np.ones((b, lk), bool), causal=True)
    assert out.shape == (b, 4, lq, 6) and out.dtype == np.float32
    assert not out.any()
    assert lse.shape == (b, 4, lq) and np.all(lse == -np.inf)
