"""MLA: the weight-absorbed decode form equals the naive form, bad input, and agreement with
a tiny randomly initialised transformers DeepSeek-V3 attention layer."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmref
from llmref.accel.numba_cpu import mla as numba_cpu_mla
from llmref.accel.numba_cuda import mla as numba_cuda_mla
from llmref.cases import make_inputs
from llmref.errors import InputError
from llmref.ref.mla import MlaParams, mla, mla_absorbed_decode, softmax_scale
from llmref.spec import load_spec

SPEC = load_spec("mla")
MLA = [mla, numba_cpu_mla.mla, numba_cuda_mla.mla]
BACKENDS = ["ref", "numba-cpu", "numba-cuda"]


def _weights(rng, b=1, length=5, dm=16, rq=8, rkv=8, heads=2, d_nope=4, d_rope=4, d_v=4):
    def w(n_in, n_out):
        return rng.normal(scale=n_in ** -0.5, size=(n_in, n_out))

    return dict(x=rng.normal(size=(b, length, dm)), positions=np.arange(length) * 3,
                wq_a=w(dm, rq), q_norm=1 + 0.1 * rng.normal(size=rq),
                wq_b=w(rq, heads * (d_nope + d_rope)), wkv_a=w(dm, rkv + d_rope),
                kv_norm=1 + 0.1 * rng.normal(size=rkv), wkv_b=w(rkv, heads * (d_nope + d_v)),
                wo=w(heads * d_v, dm))


@pytest.mark.parametrize("case", [c.id for c in SPEC.cases])
def test_absorbed_decode_equals_naive_on_the_spec_cases(case):
    c = SPEC.case(case)
    inputs = make_inputs(SPEC, c)
    np.testing.assert_allclose(mla_absorbed_decode(**inputs, **c.params),
                               mla(**inputs, **c.params), rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), heads=st.integers(1, 3), d_nope=st.integers(1, 5),
       d_rope=st.sampled_from([2, 4, 6]), d_v=st.integers(1, 5), length=st.integers(1, 6),
       interleaved=st.booleans(), rope_factor=st.sampled_from([1.0, 4.0, 40.0]))
def test_absorbed_decode_equals_naive(seed, heads, d_nope, d_rope, d_v, length, interleaved,
                                      rope_factor):
    rng = np.random.default_rng(seed)
    inputs = _weights(rng, b=2, length=length, heads=heads, d_nope=d_nope, d_rope=d_rope, d_v=d_v)
    params = dict(n_heads=heads, d_nope=d_nope, d_rope=d_rope, interleaved=interleaved,
                  rope_factor=rope_factor, mscale=1.0, mscale_all_dim=0.707)
    np.testing.assert_allclose(mla_absorbed_decode(**inputs, **params), mla(**inputs, **params),
                               rtol=1e-11, atol=1e-11)


def test_softmax_scale_uses_the_query_key_width_and_squared_mscale():
    """DeepSeek-V3: 192^-0.5 * (0.1 ln 40 + 1)^2 (research notes, sec. 2.6: 0.13523378)."""
    expected = 192 ** -0.5 * (0.1 * np.log(40) + 1) ** 2
    v3 = dict(d_nope=128, d_rope=64, mscale_all_dim=1.0)
    assert softmax_scale(MlaParams(rope_factor=40.0, **v3)) == pytest.approx(expected, rel=1e-15)
    assert softmax_scale(MlaParams(rope_factor=1.0, **v3)) == pytest.approx(192 ** -0.5, rel=1e-15)


@pytest.mark.parametrize("name,override", [
    ("wq_b", dict(wq_b=np.zeros((8, 15)))),
    ("wkv_a", dict(wkv_a=np.zeros((16, 11)))),
    ("wkv_b", dict(wkv_b=np.zeros((8, 15)))),
    ("wo", dict(wo=np.zeros((9, 16)))),
    ("x", dict(x=np.zeros((5, 16)))),
    ("positions", dict(positions=np.array([0, 1, -2, 3, 4]))),
    ("positions", dict(positions=np.arange(4))),
    ("d_rope", dict(d_rope=3)),
    ("n_heads", dict(n_heads=0)),
    ("rope_base", dict(rope_base=0.0)),
    ("eps", dict(eps=-1e-6)),
    ("x", dict(x=np.zeros((1, 5, 0)), wq_a=np.zeros((0, 8)), wkv_a=np.zeros((0, 12)),
               wo=np.zeros((8, 0)))),  # model width 0
    ("kv_norm", dict(kv_norm=np.zeros(0), wkv_a=np.zeros((16, 4)), wkv_b=np.zeros((0, 16)))),
])
@pytest.mark.parametrize("impl", MLA, ids=BACKENDS)
def test_bad_input_names_the_argument(impl, name, override):
    """Every backend validates through the reference's mla_args before any kernel runs."""
    inputs = _weights(np.random.default_rng(0))
    override = dict(override)
    params = {k: override.pop(k) for k in list(override)
              if k.startswith("d_") or k in ("n_heads", "rope_base", "eps")}
    inputs.update(override)
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(**inputs, **params)


@pytest.mark.parametrize("impl", MLA, ids=BACKENDS)
def test_params_are_keyword_only_and_named_as_in_the_spec(impl):
    """The nine inputs are positional; the sizes and RoPE scaling (MlaParams) only by name."""
    inputs = _weights(np.random.default_rng(2))
    assert impl(*inputs.values(), n_heads=2).shape == (1, 5, 16)
    with pytest.raises(TypeError):
        impl(*inputs.values(), 2)
    with pytest.raises(TypeError):
        impl(**inputs, heads=2)


@pytest.mark.parametrize("impl", MLA, ids=BACKENDS)
@pytest.mark.parametrize("b,length", [(0, 5), (2, 0)], ids=["batch0", "tokens0"])
def test_no_sequence_or_no_token_gives_an_empty_output(impl, b, length):
    inputs = {k: v.astype(np.float32) if v.dtype == np.float64 else v
              for k, v in _weights(np.random.default_rng(1), b=b, length=length).items()}
    out = impl(**inputs)
    assert out.shape == (b, length, 16) and out.dtype == np.float32


@pytest.mark.crosscheck
def test_transformers_deepseek_v3_attention_passes_the_audit():
    """Our weights are copied into a tiny DeepseekV3Attention (nn.Linear stores W^T) and its
    forward is audited at float32. yarn_deepseek_v3 is left out: HF forms the rotary angle
    p * inv_freq in float32, which at position 16383 is off by ~1e-3 rad, a documented
    divergence from this spec's float64 tables."""
    torch = pytest.importorskip("torch", reason="torch is in the crosscheck extra")
    pytest.importorskip("transformers", reason="transformers is in the crosscheck extra")
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import (DeepseekV3Attention,
                                                                      DeepseekV3RotaryEmbedding)

    def hf_mla(x, positions, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, n_heads, d_nope,
               d_rope, rope_base, rope_factor, original_max_position_embeddings, mscale,
               mscale_all_dim, eps, interleaved):
        rope = {"rope_type": "default", "rope_theta": rope_base}
        if rope_factor > 1:
            rope.update(rope_type="yarn", factor=rope_factor, mscale=mscale,
                        mscale_all_dim=mscale_all_dim,
                        original_max_position_embeddings=original_max_position_embeddings)
        config = DeepseekV3Config(
            hidden_size=x.shape[-1], num_attention_heads=n_heads, num_key_value_heads=n_heads,
            q_lora_rank=wq_a.shape[1], kv_lora_rank=kv_norm.shape[0], qk_nope_head_dim=d_nope,
            qk_rope_head_dim=d_rope, v_head_dim=wo.shape[0] // n_heads, rms_norm_eps=eps,
            rope_interleave=interleaved, rope_parameters=rope, attention_bias=False,
            max_position_embeddings=original_max_position_embeddings)
        config._attn_implementation = "eager"
        layer = DeepseekV3Attention(config, layer_idx=0).eval()
        with torch.no_grad():
            for module, weight in ((layer.q_a_proj, wq_a), (layer.q_b_proj, wq_b),
                                   (layer.kv_a_proj_with_mqa, wkv_a), (layer.kv_b_proj, wkv_b),
                                   (layer.o_proj, wo)):
                module.weight.copy_(torch.from_numpy(weight.T.astype(np.float32)))
            layer.q_a_layernorm.weight.copy_(torch.from_numpy(q_norm.astype(np.float32)))
            layer.kv_a_layernorm.weight.copy_(torch.from_numpy(kv_norm.astype(np.float32)))
            hidden = torch.from_numpy(x.astype(np.float32))
            cos_sin = DeepseekV3RotaryEmbedding(config)(hidden, torch.from_numpy(positions)[None])
            length = x.shape[1]
            causal = torch.full((length, length), float("-inf")).triu(1)[None, None]
            out, _ = layer(hidden, cos_sin, causal)
        return out.numpy().astype(x.dtype)

    report = llmref.audit(SPEC, hf_mla, cases=["plain_rope", "yarn_v2_lite"], dtype="float32")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]
