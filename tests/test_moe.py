"""MoE routing and layer: tie-breaks, the balance loss normalisation, capacity, bad input, and
agreement with transformers' Mixtral and DeepSeek-V3 blocks."""
import math

import numpy as np
import pytest

from llmref import InputError
from llmref.accel.numba_cpu import moe as moe_cpu
from llmref.ref import moe


@pytest.mark.parametrize("impl", [moe.moe_router, moe_cpu.moe_router], ids=["ref", "numba-cpu"])
def test_equal_scores_go_to_the_lower_expert_index(impl):
    out = impl(np.zeros((3, 6)), np.zeros(6), top_k=3)
    assert out["expert_ids"].tolist() == [[0, 1, 2]] * 3
    np.testing.assert_allclose(out["weights"], 1 / 3)


@pytest.mark.parametrize("impl", [moe.moe_router, moe_cpu.moe_router], ids=["ref", "numba-cpu"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_balanced_routing_has_aux_loss_one_for_every_k(impl, k):
    """Circulant logits: every expert gets T*K/E assignments and mean probability 1/E, so
    E * sum f_i P_i = E * E * (1/E) * (1/E) = 1 (HF Mixtral's convention would give K)."""
    e = 8
    base = np.linspace(3.0, 0.0, e)
    logits = np.stack([np.roll(base, t) for t in range(e)])  # (T=E, E)
    out = impl(logits, np.zeros(e), top_k=k)
    np.testing.assert_allclose(out["aux_loss"], [1.0], rtol=1e-12)


def test_z_loss_is_mean_squared_logsumexp():
    logits = np.array([[0.0, 0.0], [1.0, -1.0]])
    expected = np.mean([math.log(2) ** 2, math.log(math.e + 1 / math.e) ** 2])
    np.testing.assert_allclose(moe.moe_router(logits, np.zeros(2), top_k=1)["z_loss"], [expected])


def test_v3_bias_selects_but_does_not_weight():
    logits = np.array([[2.0, 1.0, 0.0, -1.0]])
    bias = np.array([0.0, 0.0, 0.0, 5.0])
    out = moe.moe_router(logits, bias, method="deepseek_v3", top_k=2, routed_scaling_factor=1.0)
    assert out["expert_ids"].tolist() == [[3, 0]]
    s = 1 / (1 + np.exp(-np.array([-1.0, 2.0])))
    np.testing.assert_allclose(out["weights"][0], s / s.sum())


@pytest.mark.parametrize("impl", [moe.moe_router, moe_cpu.moe_router], ids=["ref", "numba-cpu"])
def test_capacity_bounds_each_expert_and_prefers_first_choices(impl):
    rng = np.random.default_rng(0)
    t, e, k, cf = 32, 4, 2, 0.5
    logits = rng.normal(0, 3, (t, e))
    logits[:, 0] += 4.0  # expert 0 is everyone's first choice
    out = impl(logits, np.zeros(e), top_k=k, capacity_factor=cf)
    capacity = math.ceil(cf * t * k / e)
    idx, kept = out["expert_ids"], out["kept"]
    for expert in range(e):
        assert ((idx == expert) & kept).sum() == min(capacity, (idx == expert).sum())
    first = (idx[:, 0] == 0)
    assert kept[first, 0].tolist() == [True] * capacity + [False] * (first.sum() - capacity)


@pytest.mark.parametrize("impl", [moe.moe_router, moe_cpu.moe_router], ids=["ref", "numba-cpu"])
@pytest.mark.parametrize("change,argument", [
    ({"top_k": 0}, "top_k"),
    ({"top_k": 9}, "top_k"),
    ({"method": "switch"}, "method"),
    ({"method": "deepseek_v3", "n_group": 3}, "n_group"),
    ({"method": "deepseek_v3", "n_group": 4, "topk_group": 5}, "topk_group"),
    ({"method": "deepseek_v3", "n_group": 4, "topk_group": 1, "top_k": 4}, "topk_group"),
    ({"logits": np.full((2, 8), np.nan)}, "logits"),
    ({"bias": np.zeros(7)}, "bias"),
    ({"capacity_factor": -1.0}, "capacity_factor"),
])
def test_bad_input_names_the_argument(impl, change, argument):
    args = dict(logits=np.zeros((2, 8)), bias=np.zeros(8), top_k=2)
    args.update(change)
    with pytest.raises(InputError, match=f"^{argument}"):
        impl(**args)


def _layer_weights(rng, t, d, f, e, s):
    return dict(hidden=rng.normal(size=(t, d)), gate_weight=rng.normal(size=(e, d)),
                bias=np.abs(rng.normal(0, 0.5, e)), w_gate=rng.normal(0, 0.3, (e, f, d)),
                w_up=rng.normal(0, 0.3, (e, f, d)), w_down=rng.normal(0, 0.3, (e, d, f)),
                shared_gate=rng.normal(0, 0.3, (s, d)), shared_up=rng.normal(0, 0.3, (s, d)),
                shared_down=rng.normal(0, 0.3, (d, s)))


def test_layer_equals_dense_sum_over_selected_experts():
    rng = np.random.default_rng(4)
    w = _layer_weights(rng, 5, 6, 3, 4, 3)
    out = moe.moe_layer(**w, top_k=2)
    for t in range(5):
        expected = sum(out["weights"][t, j] * moe.swiglu_expert(w["hidden"][t:t + 1], w["w_gate"][e],
                                                                 w["w_up"][e], w["w_down"][e])[0]
                       for j, e in enumerate(out["expert_ids"][t]))
        np.testing.assert_allclose(out["y"][t], expected, rtol=1e-13)


@pytest.mark.crosscheck
def test_mixtral_block_against_transformers():
    torch = pytest.importorskip("torch", reason="transformers' modules run on torch")
    mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral",
                                  reason="transformers is the cross-check oracle")
    from transformers import MixtralConfig

    t, d, f, e = 7, 8, 5, 6
    config = MixtralConfig(hidden_size=d, intermediate_size=f, num_local_experts=e,
                           num_experts_per_tok=2, hidden_act="silu")
    block = mixtral.MixtralSparseMoeBlock(config).double().eval()
    w = _layer_weights(np.random.default_rng(5), t, d, f, e, 4)
    with torch.no_grad():
        block.gate.weight.copy_(torch.tensor(w["gate_weight"]))
        block.experts.gate_up_proj.copy_(torch.tensor(np.concatenate([w["w_gate"], w["w_up"]], axis=1)))
        block.experts.down_proj.copy_(torch.tensor(w["w_down"]))
        theirs = block(torch.tensor(w["hidden"])[None])[0].numpy()
        _, _, their_ids = block.gate(torch.tensor(w["hidden"]))
    ours = moe.moe_layer(**w, method="mixtral", top_k=2)
    assert np.array_equal(np.sort(ours["expert_ids"], 1), np.sort(their_ids.numpy(), 1))
    # transformers computes the router softmax in float32
    np.testing.assert_allclose(ours["y"], theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.crosscheck
def test_deepseek_v3_moe_against_transformers():
    torch = pytest.importorskip("torch", reason="transformers' modules run on torch")
    ds = pytest.importorskip("transformers.models.deepseek_v3.modeling_deepseek_v3",
                             reason="transformers is the cross-check oracle")
    from transformers import DeepseekV3Config

    t, d, f, e = 7, 8, 4, 8
    config = DeepseekV3Config(hidden_size=d, moe_intermediate_size=f, n_routed_experts=e,
                              num_experts_per_tok=2, n_group=4, topk_group=2, n_shared_experts=1,
                              routed_scaling_factor=2.5, norm_topk_prob=True, hidden_act="silu")
    block = ds.DeepseekV3MoE(config).double().eval()
    w = _layer_weights(np.random.default_rng(6), t, d, f, e, f)
    with torch.no_grad():
        block.gate.weight.copy_(torch.tensor(w["gate_weight"]))
        block.gate.e_score_correction_bias.copy_(torch.tensor(w["bias"]))
        block.experts.gate_up_proj.copy_(torch.tensor(np.concatenate([w["w_gate"], w["w_up"]], axis=1)))
        block.experts.down_proj.copy_(torch.tensor(w["w_down"]))
        block.shared_experts.gate_proj.weight.copy_(torch.tensor(w["shared_gate"]))
        block.shared_experts.up_proj.weight.copy_(torch.tensor(w["shared_up"]))
        block.shared_experts.down_proj.weight.copy_(torch.tensor(w["shared_down"]))
        theirs = block(torch.tensor(w["hidden"])[None])[0].numpy()
        _, _, their_ids = block.gate(torch.tensor(w["hidden"]))
    ours = moe.moe_layer(**w, method="deepseek_v3", top_k=2, n_group=4, topk_group=2,
                         routed_scaling_factor=2.5, use_shared=True)
    assert np.array_equal(np.sort(ours["expert_ids"], 1), np.sort(their_ids.numpy(), 1))
    np.testing.assert_allclose(ours["y"], theirs, rtol=1e-5, atol=1e-6)


ROUTINGS = [dict(method="mixtral", top_k=2), dict(method="deepseek_v2", top_k=3, routed_scaling_factor=16.0),
            dict(method="deepseek_v2", top_k=2, n_group=4, topk_group=2),
            dict(method="deepseek_v3", top_k=3, n_group=4, topk_group=2, routed_scaling_factor=2.5,
                 capacity_factor=1.0)]


@pytest.mark.parametrize("backend", ["numba-cpu", "numba-cuda"])
def test_backends_agree_with_reference_on_random_routings(backend):
    from llmref.backends import availability

    ok, why = availability(backend)
    if not ok:
        pytest.skip(f"{backend} unavailable: {why}")
    if backend == "numba-cpu":
        impl = moe_cpu
    else:
        from llmref.accel.numba_cuda import moe as impl
    rng = np.random.default_rng(13)
    for routing in ROUTINGS:
        logits, bias = rng.normal(0, 2, (12, 8)), rng.normal(0, 0.5, 8)
        ref, fast = moe.moe_router(logits, bias, **routing), impl.moe_router(logits, bias, **routing)
        for key in ("expert_ids", "kept"):
            np.testing.assert_array_equal(fast[key], ref[key], err_msg=f"{routing} {key}")
        for key in ("weights", "aux_loss", "z_loss"):
            np.testing.assert_allclose(fast[key], ref[key], rtol=1e-12, err_msg=f"{routing} {key}")
        w = _layer_weights(rng, 6, 4, 3, 8, 2)
        ref, fast = moe.moe_layer(**w, **routing, use_shared=True), impl.moe_layer(**w, **routing, use_shared=True)
        np.testing.assert_array_equal(fast["expert_ids"], ref["expert_ids"])
        np.testing.assert_allclose(fast["y"], ref["y"], rtol=1e-12, atol=1e-14)
