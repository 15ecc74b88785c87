"""Wrong MoE routing variants seen in the wild; each must fail its audit."""
import math

import numpy as np

from llmref.ref import moe


def router_mixtral_without_renormalisation(logits, bias, method="mixtral", **kw):
    out = moe.moe_router(logits, bias, method, **kw)
    if method == "mixtral":
        out["weights"] = np.take_along_axis(moe.softmax_rows(np.asarray(logits)), out["expert_ids"], -1)
    return out


def router_v3_bias_in_weights(logits, bias, method="mixtral", **kw):
    out = moe.moe_router(logits, bias, method, **kw)
    if method == "deepseek_v3":
        biased = np.take_along_axis(moe.sigmoid(np.asarray(logits)) + bias, out["expert_ids"], -1)
        out["weights"] = biased / biased.sum(-1, keepdims=True) * kw.get("routed_scaling_factor", 1.0)
    return out


def router_v3_group_score_max(logits, bias, method="mixtral", top_k=2, n_group=1, topk_group=1,
                              routed_scaling_factor=1.0, capacity_factor=0.0):
    """DeepSeek-V3 routing whose group score is the group's max biased score."""
    out = moe.moe_router(logits, bias, method, top_k, n_group, topk_group, routed_scaling_factor,
                         capacity_factor)
    if method == "deepseek_v3" and n_group > 1:
        scores = moe.sigmoid(np.asarray(logits))
        choice = moe.group_mask(scores + bias, n_group, topk_group, "max")
        idx = moe.top_k_indices(choice, top_k)
        w = np.take_along_axis(scores, idx, axis=-1)
        out["expert_ids"] = idx.astype(np.int64)
        out["weights"] = w / w.sum(axis=-1, keepdims=True) * routed_scaling_factor
    return out


def router_load_balancing_times_k(logits, bias, method="mixtral", **kw):
    out = moe.moe_router(logits, bias, method, **kw)
    out["aux_loss"] = out["aux_loss"] * out["expert_ids"].shape[1]
    return out


def router_ties_to_highest_index(logits, bias, method="mixtral", **kw):
    """Reverses the experts, routes, and maps the ids back: ties go to the higher index."""
    logits, bias = np.asarray(logits)[:, ::-1], np.asarray(bias)[::-1]
    out = moe.moe_router(logits, bias, method, **kw)
    out["expert_ids"] = logits.shape[1] - 1 - out["expert_ids"]
    return out


def router_capacity_token_major(logits, bias, method="mixtral", **kw):
    out = moe.moe_router(logits, bias, method, **kw)
    cf = kw.get("capacity_factor", 0.0)
    idx = out["expert_ids"]
    if cf:
        tokens, k = idx.shape
        n_experts = np.asarray(logits).shape[1]
        capacity = math.ceil(cf * tokens * k / n_experts)
        load = np.zeros(n_experts, dtype=np.int64)
        for t in range(tokens):
            for slot in range(k):
                out["kept"][t, slot] = load[idx[t, slot]] < capacity
                load[idx[t, slot]] += 1
    return out


def _layer_with(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
                shared_down, routed, shared_scale, use_shared, ignore_capacity):
    h = np.asarray(hidden)
    y = np.zeros_like(h)
    idx, weights, kept = routed["expert_ids"], routed["weights"], routed["kept"]
    for t in range(h.shape[0]):
        for j in range(idx.shape[1]):
            if kept[t, j] or ignore_capacity:
                e = idx[t, j]
                y[t] += weights[t, j] * moe.swiglu_expert(h[t:t + 1], w_gate[e], w_up[e], w_down[e])[0]
    if use_shared:
        y = y + shared_scale * moe.swiglu_expert(h, shared_gate, shared_up, shared_down)
    return {"y": y, "expert_ids": idx, "weights": weights, "kept": kept}


def _router_kw(kw):
    return {k: kw[k] for k in ("top_k", "n_group", "topk_group", "routed_scaling_factor",
                               "capacity_factor") if k in kw}


def layer_ignores_capacity(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate,
                           shared_up, shared_down, method="mixtral", use_shared=False, **kw):
    routed = moe.moe_router(np.asarray(hidden) @ np.asarray(gate_weight).T, bias, method, **_router_kw(kw))
    return _layer_with(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
                       shared_down, routed, 1.0, use_shared, True)


def layer_shared_expert_weighted(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate,
                                 shared_up, shared_down, method="mixtral", use_shared=False, **kw):
    routed = moe.moe_router(np.asarray(hidden) @ np.asarray(gate_weight).T, bias, method, **_router_kw(kw))
    return _layer_with(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
                       shared_down, routed, kw.get("routed_scaling_factor", 1.0), use_shared, False)


def layer_mixtral_without_renormalisation(hidden, gate_weight, bias, w_gate, w_up, w_down,
                                          shared_gate, shared_up, shared_down, method="mixtral",
                                          use_shared=False, **kw):
    logits = np.asarray(hidden) @ np.asarray(gate_weight).T
    routed = router_mixtral_without_renormalisation(logits, bias, method, **_router_kw(kw))
    return _layer_with(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
                       shared_down, routed, 1.0, use_shared, False)
