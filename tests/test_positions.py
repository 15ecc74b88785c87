"""Position encodings: RoPE properties, the scalings against transformers' rope functions and
rotary code, sinusoidal encodings' relative-position property, and bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmref.accel.numba_cpu import positions as numba_cpu_positions
from llmref.errors import InputError
from llmref.ref.positions import (learned_positions, rope, rope_inv_freq, sinusoidal_positions)
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


def test_sinusoidal_encoding_of_p_plus_k_is_a_rotation_of_p():
    """Vaswani et al. sec. 3.5: PE[p + k] is a linear function of PE[p] for a fixed offset k."""
    dim, k = 16, 7
    pe = sinusoidal_positions(np.arange(40), dim=dim)
    shifted = sinusoidal_positions(np.arange(40) + k, dim=dim)
    angle = k / 10000.0 ** (np.arange(0, dim, 2) / dim)
    sin_p, cos_p = pe[:, 0::2], pe[:, 1::2]
    np.testing.assert_allclose(shifted[:, 0::2], sin_p * np.cos(angle) + cos_p * np.sin(angle),
                               atol=1e-13)
    np.testing.assert_allclose(shifted[:, 1::2], cos_p * np.cos(angle) - sin_p * np.sin(angle),
                               atol=1e-13)


@pytest.mark.parametrize("impl", [rope, numba_cpu_positions.rope], ids=["ref", "numba-cpu"])
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
    with pytest.raises(InputError, match="^partial_rotary_factor:"):
        impl(x, np.array([0, 1, 2]), partial_rotary_factor=0.375)  # 3 channels: odd
    with pytest.raises(InputError, match="^rope_type:"):
        impl(x, np.array([0, 1, 2]), rope_type="ntk")


def test_other_position_encodings_reject_bad_input():
    with pytest.raises(InputError, match="^positions:"):
        learned_positions(np.zeros((4, 3)), np.array([[0, 4]]))
    with pytest.raises(InputError, match="^positions:"):
        learned_positions(np.zeros((4, 3)), np.array([[-1, 0]]))
    with pytest.raises(InputError, match="^positions:"):
        sinusoidal_positions(np.array([-2]))
    with pytest.raises(InputError, match="^dim:"):
        sinusoidal_positions(np.array([2]), dim=7)
    with pytest.raises(InputError, match="^rotary_dim:"):
        rope_inv_freq(rotary_dim=5)


def _transformers():
    pytest.importorskip("torch", reason="torch is in the crosscheck extra")
    return pytest.importorskip("transformers", reason="transformers is in the crosscheck extra")


def _rope_config(config_class, head_dim, rope_type="default", base=10000.0, factor=1.0,
                  original_max_position_embeddings=4096, low_freq_factor=1.0,
                  high_freq_factor=4.0, beta_fast=32.0, beta_slow=1.0, mscale=0.0,
                  mscale_all_dim=0.0, truncate=True, partial_rotary_factor=1.0, **_):
    """A tiny config (head_dim = hidden/heads) whose rope_parameters say the same as our
    params. HF's dynamic scaling reads its original context from max_position_embeddings."""
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
    return config_class(hidden_size=head_dim * 2, num_attention_heads=2,
                        max_position_embeddings=original_max_position_embeddings,
                        rope_parameters=params)


@pytest.mark.crosscheck
@pytest.mark.parametrize("case", [c.id for c in load_spec("rope_inv_freq").cases])
def test_inv_freq_matches_transformers_rope_init_functions(case):
    """HF computes inv_freq in float32: agreement to a few float32 roundings (pow, divide:
    4 ulps) plus, for the blended yarn/llama3 bands, a weight rounded in float32 whose error
    of about 2 ulps is amplified up to factor-fold relative to the blended result (which is
    >= inv/factor): 4 + 2*factor ulps. The attention factor is a Python float in both."""
    transformers = _transformers()
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = dict(load_spec("rope_inv_freq").case(case).params)
    inv_freq, factor = rope_inv_freq(**params)
    config = _rope_config(transformers.LlamaConfig, params["rotary_dim"], **params)
    rope_type = params["rope_type"]
    if rope_type == "default":
        base = params["base"]
        import torch
        hf = 1.0 / base ** (torch.arange(0, params["rotary_dim"], 2).float() / params["rotary_dim"])
        hf_factor = 1.0
    else:
        extra = {"seq_len": params["seq_len"]} if rope_type == "dynamic" else {}
        hf, hf_factor = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", **extra)
    np.testing.assert_allclose(inv_freq, hf.double().numpy(),
                               rtol=(4 + 2 * params["factor"]) * 2.0**-24)
    assert factor[0] == pytest.approx(hf_factor, rel=1e-12)


# large_positions is left out: there HF's float32 angles are off by up to ~1e-2 rad, the
# precision loss this spec's float64 tables exist to avoid.
ROPE_CASES = [c for c in load_spec("rope").cases if c.tier == "smoke" and c.id != "large_positions"]


@pytest.mark.crosscheck
@pytest.mark.parametrize("case", [c.id for c in ROPE_CASES if not c.params["interleaved"]])
def test_rotate_half_matches_transformers_rotary_code(case):
    """GPTNeoXRotaryEmbedding (Llama's, plus partial rotary) forms cos/sin in float32 from
    float32 angles, then apply_rotary_pos_emb rotates. Its angle p * inv_freq carries about
    4 float32 ulps of inv_freq's error times p plus the product's rounding, an absolute error
    of at most 4 * (p + 2) * 2^-24 rad; with a few roundings of x*cos + rot(x)*sin the bound
    is (4 * (max p + 2) + 4) * 2^-24 * max|x|."""
    transformers = _transformers()
    import torch
    from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    from llmref.cases import make_inputs

    spec = load_spec("rope")
    case_ = spec.case(case)
    inputs = make_inputs(spec, case_)
    x, positions = inputs["x"], inputs["positions"]
    ours = rope(x, positions, **case_.params)
    config = _rope_config(transformers.GPTNeoXConfig, x.shape[-1], **case_.params)
    embedding = GPTNeoXRotaryEmbedding(config)
    position_ids = torch.from_numpy(positions.reshape(-1, x.shape[2]))
    xt = torch.from_numpy(x).float()
    cos, sin = embedding(xt, position_ids)  # (Bp, L, r)
    r = cos.shape[-1]
    rotated, _ = apply_rotary_pos_emb(xt[..., :r], xt[..., :r], cos, sin)
    theirs = torch.cat([rotated, xt[..., r:]], dim=-1).double().numpy()
    bound = (4 * (positions.max() + 2) + 4) * 2.0**-24 * np.abs(x).max()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=bound)


@pytest.mark.crosscheck
def test_interleaved_matches_transformers_gptj_rotary_code():
    """GPT-J's rotate_every_two pairing with our float64 cos/sin: equal to float64 rounding."""
    _transformers()
    import torch
    from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 5, 8))  # (B, H, L, D)
    positions = np.array([0, 3, 9, 100, 2047])
    inv_freq, _ = rope_inv_freq(8)
    angle = positions[:, None] * inv_freq  # (L, 4)
    sin = torch.from_numpy(np.sin(angle))[None].expand(2, -1, -1)  # (B, L, 4)
    cos = torch.from_numpy(np.cos(angle))[None].expand(2, -1, -1)
    theirs = apply_rotary_pos_emb(torch.from_numpy(x).transpose(1, 2), sin, cos)  # (B, L, H, D)
    np.testing.assert_allclose(rope(x, positions, interleaved=True),
                               theirs.transpose(1, 2).numpy(), rtol=1e-13, atol=1e-13)
