"""MoE routing and layer: tie-breaks, the balance loss normalisation, capacity, bad input on
every backend (in a child process, where a kernel's out-of-bounds access cannot take the test
runner down), the float32 decision margins of every case, and agreement with transformers'
Mixtral and DeepSeek-V3 blocks and with torch's float32 top-k routing."""
import math

import numpy as np
import pytest

import llmref
from llmref.accel.numba_cpu import moe as moe_cpu
from llmref.cases import inputs_at, make_inputs, widen
from llmref.errors import InputError
from llmref.ref import moe
from llmref.spec import load_spec

BACKENDS = {"ref": "llmref.ref.moe", "numba-cpu": "llmref.accel.numba_cpu.moe",
            "numba-cuda": "llmref.accel.numba_cuda.moe"}


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


# --- Bad input on every backend ------------------------------------------------------------


def _router_args(**change):
    args = dict(logits=np.zeros((2, 8)), bias=np.zeros(8), method="mixtral", top_k=2, n_group=1,
                topk_group=1, routed_scaling_factor=1.0, capacity_factor=0.0)
    args.update(change)
    return args


BAD_ROUTER = [
    ("top_k_zero", {"top_k": 0}, "top_k"),
    ("top_k_above_experts", {"top_k": 9}, "top_k"),
    ("top_k_float", {"top_k": 2.0}, "top_k"),
    ("top_k_bool", {"top_k": True}, "top_k"),
    ("no_experts", {"logits": np.zeros((2, 0)), "bias": np.zeros(0)}, "top_k"),
    ("no_tokens", {"logits": np.zeros((0, 8))}, "logits"),
    ("logits_1d", {"logits": np.zeros(8)}, "logits"),
    ("logits_nan", {"logits": np.full((2, 8), np.nan)}, "logits"),
    ("logits_int", {"logits": np.zeros((2, 8), np.int64)}, "logits"),
    ("bias_short", {"bias": np.zeros(7)}, "bias"),
    ("bias_2d", {"bias": np.zeros((1, 8))}, "bias"),
    ("method", {"method": "switch"}, "method"),
    ("n_group_not_dividing", {"method": "deepseek_v3", "n_group": 3}, "n_group"),
    ("n_group_zero", {"method": "deepseek_v3", "n_group": 0}, "n_group"),
    ("topk_group_above_groups", {"method": "deepseek_v3", "n_group": 4, "topk_group": 5}, "topk_group"),
    ("topk_group_too_few_experts", {"method": "deepseek_v3", "n_group": 4, "topk_group": 1, "top_k": 4},
     "topk_group"),
    ("v3_groups_of_one", {"method": "deepseek_v3", "n_group": 8, "topk_group": 2}, "n_group"),
    ("scaling_zero", {"routed_scaling_factor": 0.0}, "routed_scaling_factor"),
    ("capacity_negative", {"capacity_factor": -1.0}, "capacity_factor"),
]


def _layer_args(**change):
    args = _layer_weights(np.random.default_rng(1), 4, 6, 3, 4, 2)
    args.update(method="mixtral", top_k=2, n_group=1, topk_group=1, routed_scaling_factor=1.0,
                capacity_factor=0.0, use_shared=True)
    args.update(change)
    return args


BAD_LAYER = [
    ("fewer_gate_experts", {"w_gate": np.zeros((2, 3, 6))}, "w_gate"),
    ("more_router_experts", {"gate_weight": np.zeros((8, 6)), "bias": np.zeros(8)}, "w_gate"),
    ("up_experts", {"w_up": np.zeros((3, 3, 6))}, "w_up"),
    ("up_ffn", {"w_up": np.zeros((4, 5, 6))}, "w_up"),
    ("down_dim", {"w_down": np.zeros((4, 8, 3))}, "w_down"),
    ("down_ffn", {"w_down": np.zeros((4, 6, 2))}, "w_down"),
    ("down_rank", {"w_down": np.zeros((4, 6))}, "w_down"),
    ("gate_weight_dim", {"gate_weight": np.zeros((4, 5))}, "gate_weight"),
    ("bias_length", {"bias": np.zeros(3)}, "bias"),
    ("hidden_3d", {"hidden": np.zeros((1, 4, 6))}, "hidden"),
    ("hidden_inf", {"hidden": np.full((4, 6), np.inf)}, "hidden"),
    ("shared_up_dim", {"shared_up": np.zeros((2, 5))}, "shared_up"),
    ("shared_down_width", {"shared_down": np.zeros((6, 3))}, "shared_down"),
    ("use_shared_not_bool", {"use_shared": "yes"}, "use_shared"),
    ("top_k_above_experts", {"top_k": 5}, "top_k"),
    ("top_k_float", {"top_k": 1.5}, "top_k"),
    ("method", {"method": "switch"}, "method"),
    ("n_group_not_dividing", {"method": "deepseek_v2", "n_group": 3}, "n_group"),
    ("capacity_negative", {"capacity_factor": -0.5}, "capacity_factor"),
]


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("entry, table, make", [("moe_router", BAD_ROUTER, _router_args),
                                                ("moe_layer", BAD_LAYER, _layer_args)],
                         ids=["moe_router", "moe_layer"])
def test_bad_shapes_and_params_raise_input_error_naming_the_argument(backend, entry, table, make, probe):
    """Every backend checks through the reference's moe_router_args / moe_layer_args before a
    kernel runs: mismatched expert weights, top_k above the expert count and every other bad
    argument raise InputError naming it, and the process survives."""
    from llmref.backends import availability

    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
    results = probe(f"{BACKENDS[backend]}:{entry}", [(label, make(**change)) for label, change, _ in table])
    wrong = {label: results.get(label) for label, _, name in table
             if results.get(label) != ("InputError", name)}
    assert not wrong, wrong


@pytest.mark.parametrize("impl", [moe.moe_layer, moe_cpu.moe_layer], ids=["ref", "numba-cpu"])
@pytest.mark.parametrize("name", ["w_gate", "w_up", "w_down", "shared_gate", "shared_up", "shared_down"])
@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
def test_a_nan_or_inf_weight_raises_naming_it_whether_or_not_a_token_reads_it(impl, name, special):
    """One token, top-1 of 4 experts: one expert's GEMMs read its weights, three never do.
    A NaN or inf in any expert's weight (or the shared expert's) is an InputError naming it
    -- numba-cpu finds those its GEMMs read through y, the others by looking."""
    for expert in range(4):
        args = _layer_args(hidden=np.random.default_rng(2).normal(size=(1, 6)), top_k=1)
        weight = args[name].copy()
        weight[(expert,) if name.startswith("w_") else (expert % weight.shape[0],)] = special
        with pytest.raises(InputError, match=f"^{name}:"):
            impl(**dict(args, **{name: weight}))


@pytest.mark.parametrize("impl", [moe.moe_layer, moe_cpu.moe_layer], ids=["ref", "numba-cpu"])
def test_a_float32_overflow_is_no_input_error(impl):
    """Finite float32 weights whose products overflow give inf, not an InputError."""
    args = {k: v.astype(np.float32) if isinstance(v, np.ndarray) else v for k, v in _layer_args().items()}
    args["w_down"] = np.full_like(args["w_down"], 3e38)
    args["w_up"] = np.full_like(args["w_up"], 1e3)
    y = impl(**args)["y"]
    assert not np.isfinite(y).all()


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_layer_without_tokens_returns_empty_outputs(backend):
    from llmref.backends import availability

    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
    fn = llmref.spec.resolve(f"{BACKENDS[backend]}:moe_layer")
    out = fn(**_layer_args(hidden=np.zeros((0, 6)), top_k=3))
    assert out["y"].shape == (0, 6) and out["y"].dtype == np.float64
    for key, dtype in (("expert_ids", np.int64), ("weights", np.float64), ("kept", np.bool_)):
        assert out[key].shape == (0, 3) and out[key].dtype == dtype, key


# --- Float32 decision margins ----------------------------------------------------------------

U32 = 2.0 ** -24


def _scores_and_errors(logits, bias, method, logit_error):
    """Ranking scores c (T, E) and a bound on the error of each when computed in float32.

    softmax (mixtral, deepseek_v2): s_e = exp(l_e - m) / S. The subtraction rounds once
    (relative error u in l_e - m, which exp turns into u |l_e - m| relative), exp adds <= 2u
    (libm within 1-2 ulps) and the division one more u; S is common to the row, so its error
    scales every score alike and cannot reorder them:
        eta_e = s_e (u (|l_e - m| + 4) + dl_e + max_e dl_e)     (dl: the logits' own error)
    sigmoid (deepseek_v3): s = 1 / (1 + exp(-l)) is exp (2u), the sum (u) and the division (u),
    at most 4u relative; the biased score c = s + bias rounds once more, and an error dl in
    the logit moves s by s (1 - s) dl:
        eta_e = 4u s_e + u |c_e| + s_e (1 - s_e) dl_e
    """
    if method == "deepseek_v3":
        s = moe.sigmoid(logits)
        c = s + bias
        return c, 4 * U32 * s + U32 * np.abs(c) + s * (1 - s) * logit_error
    s = moe.softmax_rows(logits)
    shift = np.abs(logits - logits.max(axis=-1, keepdims=True))
    return s, s * (U32 * (shift + 4) + logit_error + logit_error.max(axis=-1, keepdims=True))


def _routing_margins(logits, bias, method, top_k, n_group, topk_group, logit_error, **_):
    """For every decision a float32 router takes -- the topk_group-th group against the next,
    each selected expert against the next in ranking order, the K-th against the (K+1)-th --
    the float64 gap divided by the two values' float32 error bounds (a group score adds the
    bounds of its members and one rounding u |score| for the top-2 sum). A ratio above 1 means
    float32 arithmetic cannot reverse the decision; exact ties (gap 0) are left out: equal
    inputs treated alike stay equal in float32, and the lower index wins there too."""
    c, eta = _scores_and_errors(logits, bias, method, logit_error)
    tokens, experts = c.shape
    ratios = []
    for t in range(tokens):
        row = c[t].copy()
        if method != "mixtral" and n_group > 1:
            g, ge = row.reshape(n_group, -1), eta[t].reshape(n_group, -1)  # (G, E/G)
            if method == "deepseek_v2":
                best = g.argmax(axis=-1)[:, None]
                score, err = g.max(axis=-1), np.take_along_axis(ge, best, -1)[:, 0]
            else:
                top2 = np.argsort(-g, axis=-1, kind="stable")[:, :2]
                score = np.take_along_axis(g, top2, -1).sum(axis=-1)
                err = np.take_along_axis(ge, top2, -1).sum(axis=-1) + U32 * np.abs(score)
            order = np.argsort(-score, kind="stable")
            a, b = order[topk_group - 1], order[topk_group]
            if score[a] > score[b]:
                ratios.append((score[a] - score[b]) / (err[a] + err[b]))
            keep = np.zeros(n_group, dtype=bool)
            keep[order[:topk_group]] = True
            row = np.where(np.repeat(keep, experts // n_group), row, -np.inf)
        order = np.argsort(-row, kind="stable")
        for j in range(min(top_k + 1, experts) - 1):
            a, b = order[j], order[j + 1]
            if np.isfinite(row[b]) and row[a] > row[b]:
                ratios.append((row[a] - row[b]) / (eta[t, a] + eta[t, b]))
    return np.array(ratios)


@pytest.mark.parametrize("component", ["moe_router", "moe_layer"])
def test_no_case_has_a_float32_near_tie(component):
    """Why neither spec has a `ties:` function: on the inputs as fed at float32, every routing
    decision of every case (full tier included) is at least 4 times farther from flipping than
    float32 arithmetic can move it (measured: >= 50x for moe_router's many_tokens, >= 38x for
    moe_layer's wide_layer, >= 1500x for every smoke case). The layer's logits carry the
    float32 error of their D-term dot product, 2 sqrt(D) u sum_d |h_d W_ed| (the tolerance
    model's sqrt(n) growth, doubled). A new case that lands near a tie fails here."""
    spec = load_spec(component)
    for case in spec.cases:
        fed = widen(inputs_at(spec, make_inputs(spec, case), "float32"))
        if component == "moe_layer":
            h, w = fed["hidden"], fed["gate_weight"]
            logits = h @ w.T
            error = 2 * math.sqrt(h.shape[1]) * U32 * (np.abs(h) @ np.abs(w).T)
        else:
            logits, error = fed["logits"], np.zeros_like(fed["logits"])
        ratios = _routing_margins(logits, fed["bias"], logit_error=error, **case.params)
        if ratios.size:
            assert ratios.min() > 4, (case.id, ratios.min())


# --- torch's float32 routing passes ----------------------------------------------------------


def _top(torch, values, k):
    """Indices of the k largest values per row, largest first, the lower index first among
    equals: a stable descending sort. (torch.topk, which HF and DeepSeek use, ranks the same
    wherever values differ, but does not promise an order among equal values: on the exact
    ties of mixtral_exact_ties it returns the higher index.)"""
    return torch.sort(values, dim=-1, descending=True, stable=True).indices[..., :k]


def _torch_route(torch, logits, bias, method, top_k, n_group, topk_group, routed_scaling_factor):
    """Routing with torch ops in the input precision (float32 at float32)."""
    if method == "deepseek_v3":
        scores = torch.sigmoid(logits)
        choice = scores + bias
    else:
        scores = torch.softmax(logits, dim=-1)
        choice = scores
    tokens, experts = choice.shape
    if method != "mixtral" and n_group > 1:
        grouped = choice.view(tokens, n_group, -1)
        group_score = (grouped.max(dim=-1).values if method == "deepseek_v2"
                       else grouped.topk(2, dim=-1).values.sum(dim=-1))  # a sum: order-free
        keep = torch.zeros(tokens, n_group, dtype=torch.bool)
        keep.scatter_(1, _top(torch, group_score, topk_group), True)
        choice = choice.masked_fill(~keep.repeat_interleave(experts // n_group, dim=1), -torch.inf)
    idx = _top(torch, choice, top_k)  # (T, K)
    weights = scores.gather(1, idx)
    if method != "deepseek_v2":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    if method != "mixtral":
        weights = weights * routed_scaling_factor
    return idx, weights, scores


def _torch_capacity(torch, idx, experts, capacity_factor):
    """Slot-major position of each assignment within its expert; kept while below C."""
    tokens, k = idx.shape
    if capacity_factor == 0:
        return torch.ones(tokens, k, dtype=torch.bool)
    capacity = math.ceil(capacity_factor * tokens * k / experts)
    onehot = torch.nn.functional.one_hot(idx.T.reshape(-1), experts)  # (K T, E), slot-major
    position = (onehot.cumsum(dim=0) - 1).mul(onehot).sum(dim=1)
    return (position < capacity).view(k, tokens).T


def _torch_router(torch):
    def router(logits, bias, method, top_k, n_group, topk_group, routed_scaling_factor,
               capacity_factor):
        l, b = torch.from_numpy(logits), torch.from_numpy(bias)
        idx, weights, scores = _torch_route(torch, l, b, method, top_k, n_group, topk_group,
                                            routed_scaling_factor)
        experts = l.shape[1]
        probs = scores / scores.sum(dim=-1, keepdim=True) if method == "deepseek_v3" else scores
        f = torch.bincount(idx.reshape(-1), minlength=experts).to(l.dtype) / idx.numel()
        aux = experts * (f * probs.mean(dim=0)).sum()
        z = torch.logsumexp(l, dim=-1).square().mean()
        return {"expert_ids": idx.numpy().astype(np.int64), "weights": weights.numpy(),
                "kept": _torch_capacity(torch, idx, experts, capacity_factor).numpy(),
                "aux_loss": aux.reshape(1).numpy(), "z_loss": z.reshape(1).numpy()}

    return router


def _torch_layer(torch):
    def layer(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
              shared_down, method, top_k, n_group, topk_group, routed_scaling_factor,
              capacity_factor, use_shared):
        h = torch.from_numpy(hidden)
        wg, wu, wd = (torch.from_numpy(w) for w in (w_gate, w_up, w_down))
        experts = wg.shape[0]
        idx, weights, _ = _torch_route(torch, h @ torch.from_numpy(gate_weight).T,
                                       torch.from_numpy(bias), method, top_k, n_group,
                                       topk_group, routed_scaling_factor)
        kept = _torch_capacity(torch, idx, experts, capacity_factor)
        y = torch.zeros_like(h)
        for e in range(experts):
            rows, slots = torch.nonzero((idx == e) & kept, as_tuple=True)
            if rows.numel():
                x = h[rows]
                out = (torch.nn.functional.silu(x @ wg[e].T) * (x @ wu[e].T)) @ wd[e].T
                y.index_add_(0, rows, weights[rows, slots, None] * out)
        if use_shared:
            sg, su, sd = (torch.from_numpy(w) for w in (shared_gate, shared_up, shared_down))
            y = y + (torch.nn.functional.silu(h @ sg.T) * (h @ su.T)) @ sd.T
        return {"y": y.numpy(), "expert_ids": idx.numpy().astype(np.int64),
                "weights": weights.numpy(), "kept": kept.numpy()}

    return layer


@pytest.mark.crosscheck
@pytest.mark.parametrize("component", ["moe_router", "moe_layer"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_routing_passes_the_audit(component, dtype):
    """torch's softmax/sigmoid, matmuls and a stable descending sort for the top-k, in the
    audited precision, pass every case, full tier included: at float32 no decision is near
    enough to a tie to flip (see test_no_case_has_a_float32_near_tie)."""
    torch = pytest.importorskip("torch", reason="torch is in the crosscheck extra")
    fn = (_torch_router if component == "moe_router" else _torch_layer)(torch)
    report = llmref.audit(component, fn, dtype=dtype, tier="full")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]
