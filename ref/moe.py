"""Mixture-of-experts routing, capacity, auxiliary losses and the MoE feed-forward layer
(specs/moe_router.yaml, specs/moe_layer.yaml).

T tokens, E routed experts, K experts per token. Ranking rule everywhere (top-k of experts
and of groups): larger score first, equal scores by lower index first.
"""
import math

import numpy as np

from llmref.errors import InputError
from llmref.validate import flag, float_array, integer, positive

METHODS = ("mixtral", "deepseek_v2", "deepseek_v3")


def softmax_rows(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x):
    """1 / (1 + exp(-x)), written so that neither branch overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def top_k_indices(scores, k):
    """Per row, the indices of the k largest scores, largest first; ties by lower index."""
    order = np.argsort(-scores, axis=-1, kind="stable")  # stable: equal scores keep index order
    return order[..., :k]


def group_mask(choice, n_group, topk_group, group_score):
    """Keep the experts of the topk_group best groups (E split into n_group contiguous groups);
    experts elsewhere get -inf. group_score 'max' (DeepSeek-V2) or 'top2_sum' (DeepSeek-V3)."""
    tokens, experts = choice.shape
    grouped = choice.reshape(tokens, n_group, experts // n_group)  # (T, G, E/G)
    if group_score == "max":
        score = grouped.max(axis=-1)
    else:
        score = np.sort(grouped, axis=-1)[..., -2:].sum(axis=-1)  # (T, G)
    keep_groups = top_k_indices(score, topk_group)  # (T, topk_group)
    keep = np.zeros((tokens, n_group), dtype=bool)
    np.put_along_axis(keep, keep_groups, True, axis=-1)
    keep = np.repeat(keep, experts // n_group, axis=-1)  # (T, E)
    return np.where(keep, choice, -np.inf)


def route(logits, bias, method, top_k, n_group, topk_group, routed_scaling_factor):
    """Selection and combine weights.

    mixtral:     s = softmax(l); idx = topk(s); w = s[idx] / sum s[idx]
    deepseek_v2: s = softmax(l); groups by max s if n_group > 1; idx = topk(s); w = s[idx] * scale
    deepseek_v3: s = sigmoid(l); c = s + bias (selection only); groups by sum of the top-2 c;
                 idx = topk(c); w = s[idx] / sum s[idx] * scale
    Returns (idx (T, K) int64, w (T, K), s (T, E) router scores).
    """
    if method == "deepseek_v3":
        scores = sigmoid(logits)
        choice = scores + bias
    else:
        scores = softmax_rows(logits)
        choice = scores
    if method != "mixtral" and n_group > 1:
        choice = group_mask(choice, n_group, topk_group, "top2_sum" if method == "deepseek_v3" else "max")
    idx = top_k_indices(choice, top_k)  # (T, K)
    weights = np.take_along_axis(scores, idx, axis=-1)  # unbiased scores
    scale = scores.dtype.type(routed_scaling_factor)
    if method == "mixtral":
        weights = weights / weights.sum(axis=-1, keepdims=True)
    elif method == "deepseek_v3":
        weights = weights / weights.sum(axis=-1, keepdims=True) * scale
    else:
        weights = weights * scale
    return idx.astype(np.int64), weights, scores


def capacity_keep(idx, n_experts, capacity_factor):
    """Which (token, slot) assignments fit their expert's capacity
        C = ceil(capacity_factor * T * K / E);   capacity_factor = 0: no limit (dropless).
    Priority: slot-major (every token's first choice before any second choice, GShard), then
    token order; an assignment past its expert's C-th is dropped."""
    tokens, k = idx.shape
    if capacity_factor == 0:
        return np.ones((tokens, k), dtype=bool)
    capacity = math.ceil(capacity_factor * tokens * k / n_experts)
    keep = np.zeros((tokens, k), dtype=bool)
    load = np.zeros(n_experts, dtype=np.int64)
    for slot in range(k):
        for t in range(tokens):
            e = idx[t, slot]
            keep[t, slot] = load[e] < capacity
            load[e] += 1
    return keep


def load_balancing_loss(idx, probs, n_experts):
    """Switch-style: E * sum_i f_i P_i,  f_i = (assignments to i) / (T K),  P_i = mean_t probs_t,i.
    Perfect balance gives 1 for every K (HF Mixtral's load_balancing_loss_func is K times this)."""
    counts = np.bincount(idx.reshape(-1), minlength=n_experts).astype(probs.dtype)
    f = counts / probs.dtype.type(idx.size)
    p = probs.mean(axis=0)
    return probs.dtype.type(n_experts) * np.sum(f * p)


def z_loss(logits):
    """Router z-loss (ST-MoE): mean_t (logsumexp_e logits_t,e)^2."""
    m = logits.max(axis=-1)
    lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=-1))
    return np.mean(lse * lse)


def _router_params(n_experts, method, top_k, n_group, topk_group, routed_scaling_factor,
                   capacity_factor):
    """The routing params checked against E = n_experts."""
    if method not in METHODS:
        raise InputError(f"method: must be one of {METHODS}, got {method!r}")
    if n_experts < 1:
        raise InputError("top_k: there are no experts to choose from (E = 0)")
    integer("top_k", top_k, low=1, high=n_experts)
    integer("n_group", n_group, low=1)
    if n_experts % n_group:
        raise InputError(f"n_group: must divide the number of experts {n_experts}, got {n_group}")
    integer("topk_group", topk_group, low=1)
    if n_group > 1:
        integer("topk_group", topk_group, low=1, high=n_group)
        if topk_group * (n_experts // n_group) < top_k:
            raise InputError(f"topk_group: {topk_group} groups hold fewer than top_k={top_k} experts")
        if method == "deepseek_v3" and n_experts // n_group < 2:
            raise InputError("n_group: DeepSeek-V3 group scores need >= 2 experts per group")
    positive("routed_scaling_factor", routed_scaling_factor)
    positive("capacity_factor", capacity_factor, allow_zero=True)


def _shaped(name, value, shape, dtype, values=True):
    """A float array of `shape` (None: any length on that axis), in `dtype` (not copied when
    it is already: the expert weights are most of the memory the layer reads); with
    `values`, no NaN or inf in it."""
    arr = float_array(name, value, ndim=len(shape), allow_nan=not values,
                      allow_inf=not values).astype(dtype, copy=False)
    if any(want is not None and got != want for got, want in zip(arr.shape, shape)):
        expected = "(" + ", ".join("*" if want is None else str(want) for want in shape) + ")"
        raise InputError(f"{name}: shape {arr.shape}, expected {expected}")
    return arr


def moe_router_args(logits, bias, method, top_k, n_group, topk_group, routed_scaling_factor,
                    capacity_factor):
    """Validated (logits (T, E), bias (E,)) of moe_router, bias in the logits' dtype; every
    backend checks through this. T >= 1: the losses are means over the tokens."""
    logits = float_array("logits", logits, ndim=2)
    tokens, n_experts = logits.shape
    if tokens == 0:
        raise InputError("logits: has no tokens (T = 0); the losses are means over tokens")
    bias = float_array("bias", bias, ndim=1).astype(logits.dtype)
    if bias.shape[0] != n_experts:
        raise InputError(f"bias: has {bias.shape[0]} entries but there are {n_experts} experts")
    _router_params(n_experts, method, top_k, n_group, topk_group, routed_scaling_factor,
                   capacity_factor)
    return logits, bias


def moe_layer_args(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
                   shared_down, method, top_k, n_group, topk_group, routed_scaling_factor,
                   capacity_factor, use_shared, expert_values=True):
    """Validated arrays of moe_layer, all in the dtype of hidden: (hidden (T, D),
    gate_weight (E, D), bias (E,), w_gate (E, F, D), w_up (E, F, D), w_down (E, D, F), shared)
    with shared = (shared_gate (S, D), shared_up (S, D), shared_down (D, S)) if use_shared
    else None (the shared weights are then not read). E, F and S come from gate_weight,
    w_gate and shared_gate; every other shape must agree. T = 0 is allowed (no tokens, empty
    outputs); every backend checks through this.

    With expert_values=False the expert and shared weights' values are not looked at, only
    their shapes (they are most of the bytes the layer reads): the caller, whose kernels read
    them anyway, must call again with expert_values=True whenever an output is not finite
    or a weight its kernels did not read (an expert no token reached) is not finite."""
    h = float_array("hidden", hidden, ndim=2)
    dtype, dim = h.dtype, h.shape[1]
    gate_weight = _shaped("gate_weight", gate_weight, (None, dim), dtype)
    n_experts = gate_weight.shape[0]
    bias = _shaped("bias", bias, (n_experts,), dtype)
    v = expert_values
    w_gate = _shaped("w_gate", w_gate, (n_experts, None, dim), dtype, v)
    ffn = w_gate.shape[1]
    w_up = _shaped("w_up", w_up, (n_experts, ffn, dim), dtype, v)
    w_down = _shaped("w_down", w_down, (n_experts, dim, ffn), dtype, v)
    shared = None
    if flag("use_shared", use_shared):
        shared_gate = _shaped("shared_gate", shared_gate, (None, dim), dtype, v)
        width = shared_gate.shape[0]
        shared = (shared_gate, _shaped("shared_up", shared_up, (width, dim), dtype, v),
                  _shaped("shared_down", shared_down, (dim, width), dtype, v))
    _router_params(n_experts, method, top_k, n_group, topk_group, routed_scaling_factor,
                   capacity_factor)
    return h, gate_weight, bias, w_gate, w_up, w_down, shared


def moe_router(logits, bias, method="mixtral", top_k=2, n_group=1, topk_group=1,
               routed_scaling_factor=1.0, capacity_factor=0.0):
    """Routing of T tokens given router logits (T, E): expert ids, combine weights, the
    capacity mask, the Switch load-balancing loss and the router z-loss."""
    logits, bias = moe_router_args(logits, bias, method, top_k, n_group, topk_group,
                                   routed_scaling_factor, capacity_factor)
    idx, weights, scores = route(logits, bias, method, top_k, n_group, topk_group,
                                 routed_scaling_factor)
    probs = scores / scores.sum(axis=-1, keepdims=True) if method == "deepseek_v3" else scores
    dtype = logits.dtype
    return {"expert_ids": idx, "weights": weights,
            "kept": capacity_keep(idx, logits.shape[1], capacity_factor),
            "aux_loss": np.full(1, load_balancing_loss(idx, probs, logits.shape[1]), dtype=dtype),
            "z_loss": np.full(1, z_loss(logits), dtype=dtype)}


def silu(x):
    """x * sigmoid(x)."""
    return x * sigmoid(x)


def swiglu_expert(h, w_gate, w_up, w_down):
    """W_down (silu(W_gate h) * (W_up h)) for rows h (n, D); W_gate, W_up (F, D), W_down (D, F)."""
    return (silu(h @ w_gate.T) * (h @ w_up.T)) @ w_down.T


def moe_layer(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
              shared_down, method="mixtral", top_k=2, n_group=1, topk_group=1,
              routed_scaling_factor=1.0, capacity_factor=0.0, use_shared=False):
    """y_t = sum_{kept slots j} w_tj * SwiGLU_{e_tj}(h_t)  [+ SwiGLU_shared(h_t) if use_shared]
    with router logits l = h @ gate_weight^T routed as moe_router does. Dispatch: the rows
    routed to each expert, in token order; combine: scatter-add of weight * expert output.
    A dropped assignment adds 0."""
    h, gate_weight, bias, w_gate, w_up, w_down, shared = moe_layer_args(
        hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up, shared_down,
        method, top_k, n_group, topk_group, routed_scaling_factor, capacity_factor, use_shared)
    n_experts = gate_weight.shape[0]
    idx, weights, _ = route(h @ gate_weight.T, bias, method, top_k, n_group, topk_group,
                            routed_scaling_factor)  # (T, K) each
    kept = capacity_keep(idx, n_experts, capacity_factor)
    y = np.zeros_like(h)
    for e in range(n_experts):
        rows, slots = np.nonzero((idx == e) & kept)  # dispatch, token order
        if rows.size:
            out = swiglu_expert(h[rows], w_gate[e], w_up[e], w_down[e])  # (n_e, D)
            np.add.at(y, rows, weights[rows, slots][:, None] * out)  # combine
    if shared is not None:
        y = y + swiglu_expert(h, *shared)
    return {"y": y, "expert_ids": idx, "weights": weights, "kept": kept}
