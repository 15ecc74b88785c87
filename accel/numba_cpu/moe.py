"""MoE routing and the MoE layer as numba.njit kernels (reference: llmref.ref.moe).

Routing is one pass per token: scores, the group mask, then K rounds of "largest remaining,
lowest index on ties". The layer sorts assignments by expert (dispatch), runs one grouped
SwiGLU matmul per expert on its gathered rows, and scatter-adds the weighted rows (combine).
"""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.moe import METHODS, check_router_args
from llmref.validate import float_array


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
    logits, bias = check_router_args(logits, bias, method, top_k, n_group, topk_group,
                                     routed_scaling_factor, capacity_factor)
    lc = widen(logits)
    idx, weights, kept, aux, z = _router(lc, widen(bias), method, top_k, n_group, topk_group,
                                         routed_scaling_factor, capacity_factor)
    dtype = logits.dtype
    return {"expert_ids": idx, "weights": weights.astype(dtype), "kept": kept,
            "aux_loss": np.full(1, aux, dtype=dtype), "z_loss": np.full(1, z, dtype=dtype)}


@numba.njit(cache=True)
def _matmul_nt(a, b):
    """a @ b.T for a (n, k) and b (m, k), both row-major: each output is a dot of two rows.
    (numba's own `@` needs SciPy's BLAS, which llmref does not depend on.)"""
    out = np.empty((a.shape[0], b.shape[0]), dtype=a.dtype)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            acc = 0.0
            for p in range(a.shape[1]):
                acc += a[i, p] * b[j, p]
            out[i, j] = acc
    return out


@numba.njit(cache=True)
def _swiglu_rows(x, w_gate, w_up, w_down):
    """W_down (silu(W_gate x) * (W_up x)) for the rows of x (n, D)."""
    g = _matmul_nt(x, w_gate)  # (n, F)
    u = _matmul_nt(x, w_up)
    for i in range(g.shape[0]):
        for f in range(g.shape[1]):
            g[i, f] = g[i, f] / (1.0 + math.exp(-g[i, f])) * u[i, f]  # silu(g) * u, in place
    return _matmul_nt(g, np.ascontiguousarray(w_down))  # (n, D)


@numba.njit(cache=True)
def _experts(h, idx, weights, kept, w_gate, w_up, w_down, y):
    """Grouped per-expert matmuls: gather the rows of each expert, one SwiGLU, scatter-add."""
    tokens, k = idx.shape
    for e in range(w_gate.shape[0]):
        n = 0
        for t in range(tokens):
            for j in range(k):
                if idx[t, j] == e and kept[t, j]:
                    n += 1
        if n == 0:
            continue
        rows = np.empty(n, dtype=np.int64)
        slots = np.empty(n, dtype=np.int64)
        n = 0
        for t in range(tokens):
            for j in range(k):
                if idx[t, j] == e and kept[t, j]:
                    rows[n], slots[n] = t, j
                    n += 1
        x = np.empty((n, h.shape[1]), dtype=h.dtype)  # dispatch
        for i in range(n):
            x[i] = h[rows[i]]
        out = _swiglu_rows(x, np.ascontiguousarray(w_gate[e]), np.ascontiguousarray(w_up[e]),
                           np.ascontiguousarray(w_down[e]))
        for i in range(n):  # combine
            y[rows[i]] += weights[rows[i], slots[i]] * out[i]


def moe_layer(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
              shared_down, method="mixtral", top_k=2, n_group=1, topk_group=1,
              routed_scaling_factor=1.0, capacity_factor=0.0, use_shared=False):
    h = float_array("hidden", hidden, ndim=2)
    dtype = h.dtype
    hc = widen(h)
    ws = {n: widen(float_array(n, w).astype(dtype)) for n, w in
          (("gate_weight", gate_weight), ("w_gate", w_gate), ("w_up", w_up), ("w_down", w_down),
           ("shared_gate", shared_gate), ("shared_up", shared_up), ("shared_down", shared_down))}
    logits = hc @ ws["gate_weight"].T  # (T, E)
    logits, bias = check_router_args(logits, bias, method, top_k, n_group, topk_group,
                                     routed_scaling_factor, capacity_factor)
    idx, weights, kept, _, _ = _router(logits, widen(bias.astype(dtype)), method, top_k, n_group,
                                       topk_group, routed_scaling_factor, capacity_factor)
    y = np.zeros_like(hc)
    _experts(hc, idx, weights, kept, ws["w_gate"], ws["w_up"], ws["w_down"], y)
    if use_shared:
        y += _swiglu_rows(hc, ws["shared_gate"], ws["shared_up"], ws["shared_down"])
    return {"y": y.astype(dtype), "expert_ids": idx, "weights": weights.astype(dtype), "kept": kept}
