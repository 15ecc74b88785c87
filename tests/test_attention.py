"""Attention: online == direct, associative merging, KV-cache decode == full attention, bad
input, and agreement with torch's scaled_dot_product_attention."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmref
from llmref.accel.numba_cpu import attention as numba_cpu_attention
from llmref.accel.numba_cpu import online_attention as numba_cpu_online
from llmref.accel.numba_cuda import attention as numba_cuda_attention
from llmref.accel.numba_cuda import online_attention as numba_cuda_online
from llmref.errors import InputError
from llmref.ref.attention import (kv_cache_decode, merge_attention_states, online_attention,
                                  sdpa)
from llmref.ref.positions import rope

BACKENDS = ["ref", "numba-cpu", "numba-cuda"]
SDPA = [sdpa, numba_cpu_attention.sdpa, numba_cuda_attention.sdpa]
ONLINE = [online_attention, numba_cpu_online.online_attention, numba_cuda_online.online_attention]
DECODE = [kv_cache_decode, numba_cpu_online.kv_cache_decode, numba_cuda_online.kv_cache_decode]
MERGE = [merge_attention_states, numba_cpu_online.merge_attention_states,
         numba_cuda_online.merge_attention_states]


def _qkv(rng, b=2, hq=4, hkv=2, lq=5, lk=7, d=8, dv=None):
    q = rng.normal(size=(b, hq, lq, d))
    k = rng.normal(size=(b, hkv, lk, d))
    v = rng.normal(size=(b, hkv, lk, dv or d))
    return q, k, v


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lq=st.integers(1, 6), lk=st.integers(1, 9),
       group=st.sampled_from([1, 2, 3]), causal=st.booleans(), window=st.integers(0, 4),
       block_size=st.integers(1, 10))
def test_online_attention_equals_direct(seed, lq, lk, group, causal, window, block_size):
    rng = np.random.default_rng(seed)
    q, k, v = _qkv(rng, hq=2 * group, hkv=2, lq=lq, lk=lk, dv=5)
    mask = rng.random((2, lk)) < 0.8
    direct = sdpa(q, k, v, mask, causal=causal, window=window)
    out, lse = online_attention(q, k, v, mask, causal=causal, window=window,
                                block_size=block_size)
    np.testing.assert_allclose(out, direct, rtol=1e-12, atol=1e-12)
    assert np.all(out[np.isneginf(lse)] == 0)  # rows with no key left


def test_fully_masked_rows_are_zero_with_lse_minus_inf():
    rng = np.random.default_rng(0)
    q, k, v = _qkv(rng, lq=5, lk=3)
    out, lse = online_attention(q, k, v, np.ones((2, 3), bool), causal=True)
    assert np.all(out[:, :, :2] == 0) and np.all(np.isneginf(lse[:, :, :2]))
    assert np.all(np.isfinite(lse[:, :, 2:]))
    np.testing.assert_array_equal(sdpa(q, k, v, np.zeros((2, 3), bool)), 0.0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(0, 12), min_size=2, max_size=2))
def test_merge_is_associative_and_equals_attention_over_the_union(seed, cuts):
    """Three partial states over disjoint key sets (one may be empty) merge, in either order,
    to attention over all keys."""
    rng = np.random.default_rng(seed)
    q, k, v = _qkv(rng, lk=12)
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


@pytest.mark.parametrize("hq,hkv", [(4, 4), (4, 2), (3, 1)], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("prefill_len", [1, 3, 8])
def test_kv_cache_decode_equals_full_causal_attention(hq, hkv, prefill_len):
    rng = np.random.default_rng(hq * 10 + prefill_len)
    q, k, v = _qkv(rng, b=2, hq=hq, hkv=hkv, lq=8, lk=8, d=8)
    positions = np.arange(8)
    full = sdpa(rope(q, positions, base=50.0), rope(k, positions, base=50.0), v,
                np.ones((2, 8), bool), causal=True)
    decoded = kv_cache_decode(q, k, v, prefill_len=prefill_len, rope_base=50.0)
    np.testing.assert_allclose(decoded, full, rtol=1e-12, atol=1e-12)


def test_gqa_head_mapping_is_repeat_interleave():
    """Query heads 0, 1 read KV head 0 and heads 2, 3 read KV head 1."""
    rng = np.random.default_rng(1)
    q, k, v = _qkv(rng, b=1, hq=4, hkv=2)
    out = sdpa(q, k, v, np.ones((1, 7), bool))
    for h in range(4):
        single = sdpa(q[:, h:h + 1], k[:, h // 2:h // 2 + 1], v[:, h // 2:h // 2 + 1],
                      np.ones((1, 7), bool))
        np.testing.assert_allclose(out[:, h:h + 1], single, rtol=1e-13, atol=1e-13)


BAD = [
    ("k", dict(k=np.zeros((1, 3, 4, 8)))),  # 3 KV heads do not divide 4 query heads
    ("k", dict(k=np.zeros((1, 0, 4, 8)), v=np.zeros((1, 0, 4, 8)))),  # no KV head
    ("q", dict(q=np.zeros((1, 0, 3, 8)))),  # no query head
    ("q", dict(q=np.zeros((1, 4, 3, 0)), k=np.zeros((1, 2, 4, 0)))),  # head width 0
    ("v", dict(v=np.zeros((1, 2, 4, 0)))),  # value width 0
    ("k", dict(k=np.zeros((1, 2, 4, 6)))),  # head dim differs from q's
    ("q", dict(q=np.zeros((4, 4, 8)))),  # rank 3
    ("v", dict(v=np.zeros((1, 2, 5, 8)))),  # length differs from k's
    ("key_padding_mask", dict(key_padding_mask=np.ones((1, 4), np.int64))),
    ("key_padding_mask", dict(key_padding_mask=np.ones((1, 5), bool))),
    ("window", dict(window=-1)),
    ("scale", dict(scale=-0.5)),
]


def _attention_args(**override):
    args = dict(q=np.zeros((1, 4, 3, 8)), k=np.zeros((1, 2, 4, 8)), v=np.zeros((1, 2, 4, 8)),
                key_padding_mask=np.ones((1, 4), bool))
    args.update(override)
    return args


@pytest.mark.parametrize("impl", SDPA + ONLINE, ids=[f"sdpa-{b}" for b in BACKENDS]
                         + [f"online-{b}" for b in BACKENDS])
@pytest.mark.parametrize("name,override", BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_input_names_the_argument(impl, name, override):
    """Every backend validates through the reference's sdpa_args before any kernel runs."""
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(**_attention_args(**override))


@pytest.mark.parametrize("impl", ONLINE, ids=BACKENDS)
def test_bad_block_size_names_the_argument(impl):
    with pytest.raises(InputError, match="^block_size:"):
        impl(**_attention_args(), block_size=0)


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


@pytest.mark.parametrize("impl", MERGE, ids=BACKENDS)
def test_bad_merge_input_names_the_argument(impl):
    out, lse = np.zeros((2, 3, 4)), np.zeros((2, 3))
    with pytest.raises(InputError, match="^lse_b:"):
        impl(out, lse, out, lse[:, :2])
    with pytest.raises(InputError, match="^out_b:"):
        impl(out, lse, out[..., :3], lse)
    with pytest.raises(InputError, match="^out_a:"):
        impl(out[..., :0], lse, out[..., :0], lse)  # value width 0


@pytest.mark.parametrize("impl", SDPA + ONLINE, ids=[f"sdpa-{b}" for b in BACKENDS]
                         + [f"online-{b}" for b in BACKENDS])
@pytest.mark.parametrize("b,lq,lk", [(0, 3, 4), (1, 0, 4), (2, 3, 0)],
                         ids=["batch0", "queries0", "keys0"])
def test_empty_batches_give_empty_or_keyless_outputs(impl, b, lq, lk):
    """No sequence or no query: an empty output of the right shape, as torch gives. No key:
    every row is fully masked, so out 0 and lse -inf (the fully masked convention)."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=s).astype(np.float32)
               for s in ((b, 4, lq, 8), (b, 2, lk, 8), (b, 2, lk, 6)))
    result = impl(q, k, v, np.ones((b, lk), bool), causal=True)
    out = result[0] if isinstance(result, tuple) else result
    assert out.shape == (b, 4, lq, 6) and out.dtype == np.float32
    assert not out.any()
    if isinstance(result, tuple):
        assert result[1].shape == (b, 4, lq) and np.all(result[1] == -np.inf)


@pytest.mark.parametrize("impl", DECODE, ids=BACKENDS)
def test_kv_cache_decode_of_no_sequence_is_empty(impl):
    q = np.zeros((0, 2, 5, 4), dtype=np.float32)
    out = impl(q, q[:, :1], q[:, :1], prefill_len=2)
    assert out.shape == (0, 2, 5, 4) and out.dtype == np.float32


@pytest.mark.parametrize("impl", MERGE, ids=BACKENDS)
def test_merging_no_rows_is_empty(impl):
    out, lse = impl(np.zeros((0, 3, 4), np.float32), np.zeros((0, 3), np.float32),
                    np.zeros((0, 3, 4), np.float32), np.zeros((0, 3), np.float32))
    assert out.shape == (0, 3, 4) and lse.shape == (0, 3) and out.dtype == np.float32


def _torch():
    return pytest.importorskip("torch", reason="torch is in the crosscheck extra")


@pytest.mark.crosscheck
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_sdpa_with_a_bottom_right_mask_passes_the_audit(dtype):
    """torch's is_causal is top-left aligned, so the bottom-right causal, window and padding
    masks are passed as an explicit boolean attn_mask; enable_gqa uses the same
    repeat_interleave head mapping. torch leaves fully masked rows NaN where this spec says
    0: those are set to 0 by the wrapper, the single documented difference."""
    torch = _torch()
    F = torch.nn.functional

    def torch_sdpa(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
        lq, lk = q.shape[2], k.shape[2]
        i = np.arange(lq)[:, None] + lk - lq
        j = np.arange(lk)[None, :]
        keep = np.ones((lq, lk), bool)
        if causal:
            keep &= j <= i
        if window:
            keep &= j > i - window
        mask = keep[None, None] & key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v),
            attn_mask=torch.from_numpy(mask), scale=scale or None,
            enable_gqa=q.shape[1] != k.shape[1]).numpy()
        return np.where(mask.any(axis=-1)[..., None], out, 0).astype(q.dtype)

    report = llmref.audit("sdpa", torch_sdpa, dtype=dtype)
    assert report.passed, [(r.case, r.detail) for r in report.failures()]


@pytest.mark.crosscheck
def test_torch_is_causal_is_top_left_which_this_spec_rejects():
    """The documented trap: is_causal=True with Lq < Lk is not bottom-right aligned."""
    torch = _torch()
    rng = np.random.default_rng(2)
    q, k, v = _qkv(rng, b=1, hq=2, hkv=2, lq=3, lk=8)
    top_left = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), is_causal=True).numpy()
    bottom_right = sdpa(q, k, v, np.ones((1, 8), bool), causal=True)
    assert np.abs(top_left - bottom_right).max() > 1e-2
