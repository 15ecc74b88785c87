"""MoE routing and the MoE layer as numba.njit kernels (reference: llmref.ref.moe).

Routing is one pass per token: scores, the group mask, then K rounds of "largest remaining,
lowest index on ties". The layer sorts assignments by expert (dispatch, compiled), runs one
SwiGLU GEMM chain per expert on its gathered rows (NumPy's BLAS: numba's own `@` would need
SciPy), and scatter-adds the weighted rows (combine, compiled).
"""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.moe import METHODS, moe_layer_args, moe_router_args


@numba.njit(cache=True)
def _argmax_first(row):
    """Index of the largest entry; the lowest index among equals."""
    best = 0
    for e in range(1, row.shape[0]):
        if row[e] > row[best]:
            best = e
    return best


@numba.njit(cache=True)
def _route(logits, bias, method, top_k, n_group, topk_group, scale, idx, weights, probs):
    tokens, experts = logits.shape
    size = experts // n_group
    scores = np.empty(experts, dtype=logits.dtype)
    choice = np.empty(experts, dtype=logits.dtype)
    group_score = np.empty(n_group, dtype=logits.dtype)
    for t in range(tokens):
        m = logits[t].max()
        total = 0.0
        for e in range(experts):
            if method == 2:
                x = logits[t, e]
                scores[e] = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
            else:
                scores[e] = math.exp(logits[t, e] - m)
            total += scores[e]
        for e in range(experts):
            if method != 2:
                scores[e] /= total
            probs[t, e] = scores[e] / total if method == 2 else scores[e]
            choice[e] = scores[e] + bias[e] if method == 2 else scores[e]
        if method != 0 and n_group > 1:
            for g in range(n_group):
                first, second = -np.inf, -np.inf
                for e in range(g * size, (g + 1) * size):
                    if choice[e] > first:
                        first, second = choice[e], first
                    elif choice[e] > second:
                        second = choice[e]
                group_score[g] = first + second if method == 2 else first
            for _ in range(n_group - topk_group):  # mask the worst groups: lowest score, highest index on ties
                worst = 0
                for g in range(1, n_group):
                    if group_score[g] <= group_score[worst]:
                        worst = g
                group_score[worst] = np.inf
                for e in range(worst * size, (worst + 1) * size):
                    choice[e] = -np.inf
        chosen_sum = 0.0
        for j in range(top_k):
            e = _argmax_first(choice)
            idx[t, j] = e
            weights[t, j] = scores[e]
            chosen_sum += scores[e]
            choice[e] = -np.inf
        for j in range(top_k):
            if method == 0:
                weights[t, j] /= chosen_sum
            elif method == 1:
                weights[t, j] *= scale
            else:
                weights[t, j] = weights[t, j] / chosen_sum * scale


@numba.njit(cache=True)
def _capacity(idx, experts, capacity, kept):
    load = np.zeros(experts, dtype=np.int64)
    for j in range(idx.shape[1]):
        for t in range(idx.shape[0]):
            e = idx[t, j]
            kept[t, j] = capacity < 0 or load[e] < capacity
            load[e] += 1


@numba.njit(cache=True)
def _losses(logits, idx, probs):
    tokens, experts = logits.shape
    counts = np.zeros(experts, dtype=logits.dtype)
    for t in range(tokens):
        for j in range(idx.shape[1]):
            counts[idx[t, j]] += 1.0
    aux = 0.0
    for e in range(experts):
        p = 0.0
        for t in range(tokens):
            p += probs[t, e]
        aux += counts[e] / idx.size * (p / tokens)
    z = 0.0
    for t in range(tokens):
        m = logits[t].max()
        s = 0.0
        for e in range(experts):
            s += math.exp(logits[t, e] - m)
        lse = m + math.log(s)
        z += lse * lse
    return experts * aux, z / tokens


def _router(logits, bias, method, top_k, n_group, topk_group, routed_scaling_factor,
            capacity_factor):
    tokens, experts = logits.shape
    idx = np.empty((tokens, top_k), dtype=np.int64)
    weights = np.empty((tokens, top_k), dtype=logits.dtype)
    probs = np.empty_like(logits)
    _route(logits, bias, METHODS.index(method), top_k, n_group, topk_group,
           float(routed_scaling_factor), idx, weights, probs)
    kept = np.empty((tokens, top_k), dtype=np.bool_)
    capacity = math.ceil(capacity_factor * tokens * top_k / experts) if capacity_factor else -1
    _capacity(idx, experts, capacity, kept)
    aux, z = _losses(logits, idx, probs)
    return idx, weights, kept, aux, z


def moe_router(logits, bias, method="mixtral", top_k=2, n_group=1, topk_group=1,
               routed_scaling_factor=1.0, capacity_factor=0.0):
    logits, bias = moe_router_args(logits, bias, method, top_k, n_group, topk_group,
                                   routed_scaling_factor, capacity_factor)
    lc = widen(logits)
    idx, weights, kept, aux, z = _router(lc, widen(bias), method, top_k, n_group, topk_group,
                                         routed_scaling_factor, capacity_factor)
    dtype = logits.dtype
    return {"expert_ids": idx, "weights": weights.astype(dtype), "kept": kept,
            "aux_loss": np.full(1, aux, dtype=dtype), "z_loss": np.full(1, z, dtype=dtype)}


@numba.njit(cache=True)
def _dispatch(idx, kept, experts):
    """The kept assignments sorted by expert (within an expert: token order, then slot):
    rows[i], slots[i] of assignment i, and offsets (E + 1,) so expert e owns
    rows[offsets[e]:offsets[e + 1]]."""
    tokens, k = idx.shape
    offsets = np.zeros(experts + 1, dtype=np.int64)
    for t in range(tokens):
        for j in range(k):
            if kept[t, j]:
                offsets[idx[t, j] + 1] += 1
    for e in range(experts):
        offsets[e + 1] += offsets[e]
    fill = offsets[:-1].copy()
    rows = np.empty(offsets[experts], dtype=np.int64)
    slots = np.empty(offsets[experts], dtype=np.int64)
    for t in range(tokens):
        for j in range(k):
            if kept[t, j]:
                e = idx[t, j]
                rows[fill[e]], slots[fill[e]] = t, j
                fill[e] += 1
    return rows, slots, offsets


@numba.njit(cache=True)
def _combine(y, rows, slots, weights, out):
    """y[rows[i]] += weights[rows[i], slots[i]] * out[i], in dispatch order."""
    for i in range(rows.shape[0]):
        w = weights[rows[i], slots[i]]
        for d in range(y.shape[1]):
            y[rows[i], d] += w * out[i, d]


def _swiglu_rows(x, w_gate, w_up, w_down):
    """W_down (silu(W_gate x) * (W_up x)) for the rows of x (n, D): one GEMM per projection."""
    g = x @ w_gate.T  # (n, F)
    return (g / (1 + np.exp(-g)) * (x @ w_up.T)) @ w_down.T  # (n, D)


def _experts(h, idx, weights, kept, w_gate, w_up, w_down):
    """Grouped per-expert matmuls: dispatch (gather each expert's rows), one SwiGLU GEMM chain
    per expert, combine (scatter-add the weighted rows)."""
    rows, slots, offsets = _dispatch(idx, kept, w_gate.shape[0])
    out = np.empty((rows.shape[0], h.shape[1]), dtype=h.dtype)  # (assignments, D)
    for e in range(w_gate.shape[0]):
        mine = slice(offsets[e], offsets[e + 1])
        if mine.start < mine.stop:
            out[mine] = _swiglu_rows(h[rows[mine]], w_gate[e], w_up[e], w_down[e])
    y = np.zeros_like(h)
    _combine(y, rows, slots, weights, out)
    return y


def moe_layer(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
              shared_down, method="mixtral", top_k=2, n_group=1, topk_group=1,
              routed_scaling_factor=1.0, capacity_factor=0.0, use_shared=False):
    h, gate_weight, bias, w_gate, w_up, w_down, shared = moe_layer_args(
        hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up, shared_down,
        method, top_k, n_group, topk_group, routed_scaling_factor, capacity_factor, use_shared)
    dtype, tokens = h.dtype, h.shape[0]
    if tokens == 0:  # nothing to route
        return {"y": h.copy(), "expert_ids": np.zeros((0, top_k), np.int64),
                "weights": np.zeros((0, top_k), dtype), "kept": np.zeros((0, top_k), np.bool_)}
    hc = widen(h)
    logits = hc @ widen(gate_weight).T  # (T, E)
    idx, weights, kept, _, _ = _router(logits, widen(bias), method, top_k, n_group, topk_group,
                                       routed_scaling_factor, capacity_factor)
    y = _experts(hc, idx, weights, kept, widen(w_gate), widen(w_up), widen(w_down))
    if shared is not None:
        y += _swiglu_rows(hc, *(widen(w) for w in shared))
    return {"y": y.astype(dtype), "expert_ids": idx, "weights": weights.astype(dtype), "kept": kept}
