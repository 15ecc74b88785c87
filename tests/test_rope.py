"""RoPE: rotation properties, the scalings against transformers' rope functions and rotary
code, and bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmref
from llmref.accel.numba_cpu import rope as numba_cpu_rope
from llmref.accel.numba_cuda import rope as numba_cuda_rope
from llmref.errors import InputError
from llmref.ref.rope import rope, rope_inv_freq
from llmref.spec import load_spec


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(0, 5000), n=st.integers(0, 5000),
       shift=st.integers(0, 5000), interleaved=st.booleans())
def test_rope_scores_depend_only_on_relative_position(seed, m, n, shift, interleaved):
    """<R(m) q, R(n) k> = <R(m + s) q, R(n + s) k> (RoFormer sec. 3.2), and R preserves norms."""
    rng = np.random.default_rng(seed)
    q, k = rng.normal(size=(2, 1, 1, 1, 16))

    def score(a, b):
        rq = rope(q, np.array([a]), interleaved=interleaved)
        rk = rope(k, np.array([b]), interleaved=interleaved)
        return float(np.sum(rq * rk))

    assert score(m, n) == pytest.approx(score(m + shift, n + shift), rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(np.linalg.norm(rope(q, np.array([m]))), np.linalg.norm(q),
                               rtol=1e-13)


def test_rope_at_position_zero_is_the_identity_and_partial_keeps_the_tail():
    x = np.random.default_rng(0).normal(size=(1, 2, 3, 16))
    np.testing.assert_array_equal(rope(x, np.zeros(3, np.int64)), x)
    y = rope(x, np.array([5, 6, 7]), partial_rotary_factor=0.25)
    np.testing.assert_array_equal(y[..., 4:], x[..., 4:])
    assert np.abs(y[..., :4] - x[..., :4]).max() > 0.1


ROPE_IMPLS = [rope, numba_cpu_rope.rope, numba_cuda_rope.rope]
ROPE_IDS = ["ref", "numba-cpu", "numba-cuda"]


@pytest.mark.parametrize("impl", ROPE_IMPLS, ids=ROPE_IDS)
def test_rope_bad_input_names_the_argument(impl):
    x = np.zeros((1, 2, 3, 8))
    with pytest.raises(InputError, match="^positions:"):
        impl(x, np.array([0, -1, 2]))
    with pytest.raises(InputError, match="^positions:"):
        impl(x, np.array([0, 1]))
    with pytest.raises(InputError, match="^positions:"):
        impl(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(InputError, match="^x:"):
        impl(np.zeros((2, 3, 8)), np.array([0, 1, 2]))
    with pytest.raises(InputError, match="^x:"):
        impl(np.zeros((1, 2, 3, 0)), np.array([0, 1, 2]))  # no channel to rotate
    with pytest.raises(InputError, match="^partial_rotary_factor:"):
        impl(x, np.array([0, 1, 2]), partial_rotary_factor=0.375)  # 3 channels: odd
    with pytest.raises(InputError, match="^rope_type:"):
        impl(x, np.array([0, 1, 2]), rope_type="ntk")


@pytest.mark.parametrize("impl", ROPE_IMPLS, ids=ROPE_IDS)
@pytest.mark.parametrize("shape", [(0, 2, 3, 8), (1, 0, 3, 8), (2, 2, 0, 8)],
                         ids=["batch0", "heads0", "length0"])
def test_rope_of_an_empty_batch_is_empty(impl, shape):
    """Zero sequences, heads or tokens: an empty output of x's shape and dtype, as torch."""
    x = np.zeros(shape, dtype=np.float32)
    out = impl(x, np.arange(shape[2]))
    assert out.shape == shape and out.dtype == np.float32


def test_rope_inv_freq_rejects_bad_input():
    with pytest.raises(InputError, match="^rotary_dim:"):
        rope_inv_freq(rotary_dim=5)
    with pytest.raises(InputError, match="^rotary_dim:"):
        rope_inv_freq(rotary_dim=2, rope_type="dynamic")  # d/(d-2)
    with pytest.raises(InputError, match="^seq_len:"):
        rope_inv_freq(seq_len=-1)
    with pytest.raises(TypeError):
        rope_inv_freq(8)  # the scaling parameters are keyword-only


def _transformers():
    pytest.importorskip("torch", reason="torch is in the crosscheck extra")
    return pytest.importorskip("transformers", reason="transformers is in the crosscheck extra")


def _rope_config(config_class, head_dim, rope_type="default", base=10000.0, factor=1.0,
                  original_max_position_embeddings=4096, low_freq_factor=1.0,
                  high_freq_factor=4.0, beta_fast=32.0, beta_slow=1.0, mscale=0.0,
                  mscale_all_dim=0.0, truncate=True, partial_rotary_factor=1.0, **_):
    """A tiny config (head_dim = hidden/heads; DeepSeek-V3's rotary width is its
    qk_rope_head_dim, GLM's head_dim defaults to 128) whose rope_parameters say the same as
    our params. HF's dynamic scaling reads its original context from max_position_embeddings."""
    params = {"rope_type": rope_type, "rope_theta": base,
              "partial_rotary_factor": partial_rotary_factor}  # GPT-NeoX's default is 0.25
    if rope_type != "default":
        params["factor"] = factor
    if rope_type in ("yarn", "llama3"):
        params["original_max_position_embeddings"] = original_max_position_embeddings
    if rope_type == "llama3":
        params.update(low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor)
    if rope_type == "yarn":
        params.update(beta_fast=beta_fast, beta_slow=beta_slow, truncate=truncate)
        if mscale and mscale_all_dim:
            params.update(mscale=mscale, mscale_all_dim=mscale_all_dim)
    width = {"DeepseekV3Config": {"qk_rope_head_dim": head_dim},
             "GlmConfig": {"head_dim": head_dim}}.get(config_class.__name__, {})
    return config_class(hidden_size=head_dim * 2, num_attention_heads=2,
                        max_position_embeddings=original_max_position_embeddings,
                        rope_parameters=params, **width)


def _hf_inv_freq(rotary_dim, rope_type="default", seq_len=0, **params):
    """HF's rope init function for rope_type, as shipped (float32), as an audit callable."""
    transformers = _transformers()
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = _rope_config(transformers.LlamaConfig, rotary_dim, rope_type, **params)
    if rope_type == "default":
        inv_freq, factor = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        extra = {"seq_len": seq_len} if rope_type == "dynamic" else {}
        inv_freq, factor = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", **extra)
    assert inv_freq.dtype == __import__("torch").float32
    return inv_freq.numpy(), np.array([factor], dtype=np.float32)


@pytest.mark.crosscheck
def test_transformers_rope_init_functions_pass_the_float32_audit():
    """HF computes inv_freq in float32; audited at float32 it must pass on every case, within
    the derived bound (rope_inv_freq_bound), with room to spare."""
    report = llmref.audit("rope_inv_freq", _hf_inv_freq, dtype="float32")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]
    assert {r.case for r in report.results} == {c.id for c in load_spec("rope_inv_freq").cases}
    assert max(r.comparisons[0].metrics["headroom"] for r in report.results) < 0.5


def _hf_rotary(x, positions, interleaved=False, partial_rotary_factor=1.0, **scaling):
    """transformers' rotary code exactly as shipped, float32 tables, as an audit callable:

      rotate-half, whole head    LlamaRotaryEmbedding + llama apply_rotary_pos_emb
      rotate-half, partial       GPTNeoXRotaryEmbedding + gpt_neox apply_rotary_pos_emb
      interleaved, whole head    DeepseekV3RotaryEmbedding + apply_rotary_pos_emb_interleave
      interleaved, partial       GlmRotaryEmbedding + glm apply_rotary_pos_emb
    The rotary embedding module takes the rope type and scalings from the config and, for
    'dynamic', rescales from max(position_ids) + 1 (dynamic_rope_update). DeepSeek-V3's
    function returns the rotated pairs de-interleaved ([x'_0, x'_2, ... | x'_1, x'_3, ...],
    the same q.k); the wrapper puts them back in place, a pure permutation."""
    transformers = _transformers()
    import torch
    from transformers.models.deepseek_v3 import modeling_deepseek_v3 as deepseek
    from transformers.models.glm import modeling_glm as glm
    from transformers.models.gpt_neox import modeling_gpt_neox as neox
    from transformers.models.llama import modeling_llama as llama

    partial = partial_rotary_factor != 1.0
    config_class, embedding, apply = {
        (False, False): (transformers.LlamaConfig, llama.LlamaRotaryEmbedding,
                         llama.apply_rotary_pos_emb),
        (False, True): (transformers.GPTNeoXConfig, neox.GPTNeoXRotaryEmbedding,
                        neox.apply_rotary_pos_emb),
        (True, False): (transformers.DeepseekV3Config, deepseek.DeepseekV3RotaryEmbedding,
                        deepseek.apply_rotary_pos_emb_interleave),
        (True, True): (transformers.GlmConfig, glm.GlmRotaryEmbedding, glm.apply_rotary_pos_emb),
    }[(bool(interleaved), partial)]
    config = _rope_config(config_class, x.shape[-1], partial_rotary_factor=partial_rotary_factor,
                          **scaling)
    xt = torch.from_numpy(x)
    cos, sin = embedding(config)(xt, torch.from_numpy(positions.reshape(-1, x.shape[2])))
    assert cos.dtype == torch.float32
    rotated, _ = apply(xt, xt, cos, sin)
    if apply is deepseek.apply_rotary_pos_emb_interleave:
        first, second = rotated.chunk(2, dim=-1)
        rotated = torch.stack([first, second], dim=-1).flatten(-2)
    return rotated.numpy()


ROPE = load_spec("rope")


@pytest.mark.crosscheck
def test_transformers_llama_rope_passes_the_float32_audit_on_every_case_it_expresses():
    """LlamaRotaryEmbedding + apply_rotary_pos_emb as shipped (float32 inv_freq, float32
    angles and cos/sin) on every rotate-half, whole-head case, full tier included: within
    the derived angle bound, with headroom (worst error / bound) well below 1."""
    cases = [c.id for c in ROPE.cases if not c.params["interleaved"]
             and c.params["partial_rotary_factor"] == 1.0]
    report = llmref.audit("rope", _hf_rotary, dtype="float32", cases=cases, tier="full")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]
    assert len(report.results) == len(cases) >= 9
    assert max(r.comparisons[0].metrics["headroom"] for r in report.results) < 0.5


@pytest.mark.crosscheck
def test_transformers_rotary_code_for_other_pairings_passes_the_float32_audit():
    """The cases Llama cannot express -- partial rotary and interleaved pairs -- through
    GPT-NeoX's, DeepSeek-V3's and GLM's rotary code, as shipped."""
    cases = [c.id for c in ROPE.cases if c.params["interleaved"]
             or c.params["partial_rotary_factor"] != 1.0]
    report = llmref.audit("rope", _hf_rotary, dtype="float32", cases=cases, tier="full")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]
    assert len(report.results) == len(cases) >= 4


def test_bfloat16_tables_are_rejected_where_float32_angles_pass():
    """cos/sin tables rounded to bfloat16 (2^-9) break the bound on the cases of small angles,
    while the same cases pass with the float32 tables a correct implementation has."""
    from llmref.ref.wrong.rope import rope_cos_sin_tables_bfloat16

    report = llmref.audit("rope", rope_cos_sin_tables_bfloat16, dtype="float32")
    assert not report.passed
    rejected = {r.case for r in report.failures()}
    assert {"neox_default", "interleaved_default", "batch_positions"} <= rejected


@pytest.mark.crosscheck
def test_interleaved_matches_transformers_gptj_rotary_code():
    """GPT-J's rotate_every_two pairing with our float64 cos/sin: equal to float64 rounding."""
    _transformers()
    import torch
    from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 5, 8))  # (B, H, L, D)
    positions = np.array([0, 3, 9, 100, 2047])
    inv_freq, _ = rope_inv_freq(rotary_dim=8)
    angle = positions[:, None] * inv_freq  # (L, 4)
    sin = torch.from_numpy(np.sin(angle))[None].expand(2, -1, -1)  # (B, L, 4)
    cos = torch.from_numpy(np.cos(angle))[None].expand(2, -1, -1)
    theirs = apply_rotary_pos_emb(torch.from_numpy(x).transpose(1, 2), sin, cos)  # (B, L, H, D)
    np.testing.assert_allclose(rope(x, positions, interleaved=True),
                               theirs.transpose(1, 2).numpy(), rtol=1e-13, atol=1e-13)
