"""kv_cache_decode: decoding through the cache equals causal attention over the whole rotated
sequence, bad input, no sequence."""
import numpy as np
import pytest

from llmref.accel.numba_cpu import kv_cache_decode as numba_cpu_decode
from llmref.accel.numba_cuda import kv_cache_decode as numba_cuda_decode
from llmref.errors import InputError
from llmref.ref.kv_cache_decode import kv_cache_decode
from llmref.ref.rope import rope
from llmref.ref.sdpa import sdpa
from test_sdpa import BACKENDS, qkv

DECODE = [kv_cache_decode, numba_cpu_decode.kv_cache_decode, numba_cuda_decode.kv_cache_decode]


@pytest.mark.parametrize("hq,hkv", [(4, 4), (4, 2), (3, 1)], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("prefill_len", [1, 3, 8])
def test_kv_cache_decode_equals_full_causal_attention(hq, hkv, prefill_len):
    rng = np.random.default_rng(hq * 10 + prefill_len)
    q, k, v = qkv(rng, b=2, hq=hq, hkv=hkv, lq=8, lk=8, d=8)
    positions = np.arange(8)
    full = sdpa(rope(q, positions, base=50.0), rope(k, positions, base=50.0), v,
                np.ones((2, 8), bool), causal=True)
    decoded = kv_cache_decode(q, k, v, prefill_len=prefill_len, rope_base=50.0)
    np.testing.assert_allclose(decoded, full, rtol=1e-12, atol=1e-12)


def test_numba_cpu_steps_on_both_sides_of_the_blas_threshold_match_the_reference():
    """The prefill and the decode steps past numba_cpu's BLAS_WORK go through the blocked
    (BLAS) attention, the smaller steps through the row kernel: here the prefill, the steps to
    a cache of 128 keys, and the ones after (8 heads of dim 64: 512 multiply-adds a key)."""
    assert 8 * 64 * 101 <= numba_cpu_decode.BLAS_WORK < 8 * 64 * 160  # the case straddles it
    rng = np.random.default_rng(7)
    q, k, v = qkv(rng, b=1, hq=8, hkv=2, lq=160, lk=160, d=64)
    expected = kv_cache_decode(q, k, v, prefill_len=100)
    np.testing.assert_allclose(numba_cpu_decode.kv_cache_decode(q, k, v, prefill_len=100), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", DECODE, ids=BACKENDS)
def test_bad_decode_input_names_the_argument(impl):
    q = np.zeros((1, 2, 3, 4))
    with pytest.raises(InputError, match="^prefill_len:"):
        impl(q, q, q, prefill_len=4)
    with pytest.raises(InputError, match="^k:"):
        impl(q, q[:, :, :2], q[:, :, :2], prefill_len=1)  # not self-attention
    with pytest.raises(InputError, match="^k:"):
        impl(q, q[:, :0], q[:, :0], prefill_len=1)  # no KV head
    with pytest.raises(InputError, match="^q:"):
        impl(q[..., :3], q[..., :3], q[..., :3], prefill_len=1)  # odd head dim: no RoPE pairs
    with pytest.raises(InputError, match="^rope_base:"):
        impl(q, q, q, prefill_len=1, rope_base=0.0)


@pytest.mark.parametrize("impl", DECODE, ids=BACKENDS)
def test_kv_cache_decode_of_no_sequence_is_empty(impl):
    q = np.zeros((0, 2, 5, 4), dtype=np.float32)
    out = impl(q, q[:, :1], q[:, :1], prefill_len=2)
    assert out.shape == (0, 2, 5, 4) and out.dtype == np.float32
