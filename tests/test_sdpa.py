"""sdpa: the GQA head mapping, bad input, empty batches, and agreement with torch's
scaled_dot_product_attention. BAD and attention_args serve test_online_attention too (the
same argument checks, sdpa_args)."""
import numpy as np
import pytest

import llmref
from llmref.accel.numba_cpu import sdpa as numba_cpu_sdpa
from llmref.accel.numba_cuda import sdpa as numba_cuda_sdpa
from llmref.errors import InputError
from llmref.ref.sdpa import sdpa

BACKENDS = ["ref", "numba-cpu", "numba-cuda"]
SDPA = [sdpa, numba_cpu_sdpa.sdpa, numba_cuda_sdpa.sdpa]


def qkv(rng, b=2, hq=4, hkv=2, lq=5, lk=7, d=8, dv=None):
    q = rng.normal(size=(b, hq, lq, d))
    k = rng.normal(size=(b, hkv, lk, d))
    v = rng.normal(size=(b, hkv, lk, dv or d))
    return q, k, v


def test_gqa_head_mapping_is_repeat_interleave():
    """Query heads 0, 1 read KV head 0 and heads 2, 3 read KV head 1."""
    rng = np.random.default_rng(1)
    q, k, v = qkv(rng, b=1, hq=4, hkv=2)
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
BAD_IDS = [f"{n}-{i}" for i, (n, _) in enumerate(BAD)]


def attention_args(**override):
    args = dict(q=np.zeros((1, 4, 3, 8)), k=np.zeros((1, 2, 4, 8)), v=np.zeros((1, 2, 4, 8)),
                key_padding_mask=np.ones((1, 4), bool))
    args.update(override)
    return args


@pytest.mark.parametrize("impl", SDPA, ids=BACKENDS)
@pytest.mark.parametrize("name,override", BAD, ids=BAD_IDS)
def test_bad_input_names_the_argument(impl, name, override):
    """Every backend validates through the reference's sdpa_args before any kernel runs."""
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(**attention_args(**override))


@pytest.mark.parametrize("impl", SDPA, ids=BACKENDS)
@pytest.mark.parametrize("b,lq,lk", [(0, 3, 4), (1, 0, 4), (2, 3, 0)],
                         ids=["batch0", "queries0", "keys0"])
def test_empty_batches_give_empty_or_keyless_outputs(impl, b, lq, lk):
    """No sequence or no query: an empty output of the right shape, as torch gives. No key:
    every row is fully masked, so out 0 (the fully masked convention)."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=s).astype(np.float32)
               for s in ((b, 4, lq, 8), (b, 2, lk, 8), (b, 2, lk, 6)))
    out = impl(q, k, v, np.ones((b, lk), bool), causal=True)
    assert out.shape == (b, 4, lq, 6) and out.dtype == np.float32
    assert not out.any()


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
    q, k, v = qkv(rng, b=1, hq=2, hkv=2, lq=3, lk=8)
    top_left = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), is_causal=True).numpy()
    bottom_right = sdpa(q, k, v, np.ones((1, 8), bool), causal=True)
    assert np.abs(top_left - bottom_right).max() > 1e-2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numba_cpu_tiled_path_matches_the_goldens(monkeypatch, dtype):
    """numba-cpu runs problems of at most SMALL scores through the row kernel, so the goldens
    (all small) would not reach its tiled path; with SMALL = 0 every case takes it."""
    monkeypatch.setattr(numba_cpu_sdpa, "SMALL", 0)
    spec = llmref.load_spec("sdpa")
    report = llmref.audit(spec, numba_cpu_sdpa.sdpa, dtype=dtype, label="numba-cpu tiled")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]
