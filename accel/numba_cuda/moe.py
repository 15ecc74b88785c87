"""MoE routing and the MoE layer as numba.cuda kernels (reference: llmref.ref.moe).

Router: one thread per token (scores, group mask, K rounds of lowest-index argmax); capacity:
one thread per expert scanning the assignments slot-major; loss partials: one thread per
expert. Layer: the host sorts assignments by expert (dispatch offsets); grouped SwiGLU kernels
run one thread per (assignment row, F) and per (assignment row, D); a combine kernel sums each
token's kept slots in slot order. Every output buffer is guarded.
"""
import math

import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import widen
from llmref.backends import simulated
from llmref.ref.moe import METHODS, moe_layer_args, moe_router_args

THREADS = 32 if simulated() else 128


def _blocks(n):
    return (n + THREADS - 1) // THREADS


@cuda.jit
def _route(logits, bias, method, top_k, n_group, topk_group, scale, scores, choice, group_score,
           idx, weights, probs, lse_sq):
    t = cuda.grid(1)
    if t >= logits.shape[0]:
        return
    experts = logits.shape[1]
    size = experts // n_group
    m = -math.inf
    for e in range(experts):
        m = max(m, logits[t, e])
    s = 0.0
    for e in range(experts):
        s += math.exp(logits[t, e] - m)
    lse = m + math.log(s)
    lse_sq[t] = lse * lse
    total = 0.0
    for e in range(experts):
        x = logits[t, e]
        if method == 2:
            scores[t, e] = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
        else:
            scores[t, e] = math.exp(x - m) / s
        total += scores[t, e]
    for e in range(experts):
        probs[t, e] = scores[t, e] / total if method == 2 else scores[t, e]
        choice[t, e] = scores[t, e] + bias[e] if method == 2 else scores[t, e]
    if method != 0 and n_group > 1:
        for g in range(n_group):
            first = -math.inf
            second = -math.inf
            for e in range(g * size, (g + 1) * size):
                c = choice[t, e]
                if c > first:
                    second = first
                    first = c
                elif c > second:
                    second = c
            group_score[t, g] = first + second if method == 2 else first
        for _ in range(n_group - topk_group):  # drop the worst group: lowest score, highest index
            worst = 0
            for g in range(1, n_group):
                if group_score[t, g] <= group_score[t, worst]:
                    worst = g
            group_score[t, worst] = math.inf
            for e in range(worst * size, (worst + 1) * size):
                choice[t, e] = -math.inf
    chosen = 0.0
    for j in range(top_k):
        best = 0
        for e in range(1, experts):
            if choice[t, e] > choice[t, best]:
                best = e
        idx[t, j] = best
        weights[t, j] = scores[t, best]
        chosen += scores[t, best]
        choice[t, best] = -math.inf
    for j in range(top_k):
        if method == 0:
            weights[t, j] = weights[t, j] / chosen
        elif method == 1:
            weights[t, j] = weights[t, j] * scale
        else:
            weights[t, j] = weights[t, j] / chosen * scale


@cuda.jit
def _capacity_and_balance(idx, probs, capacity, kept, balance):
    """Thread e: kept flags of expert e's assignments (slot-major) and f_e * P_e."""
    e = cuda.grid(1)
    if e >= probs.shape[1]:
        return
    tokens, k = idx.shape
    load = 0
    for j in range(k):
        for t in range(tokens):
            if idx[t, j] == e:
                kept[t, j] = 1 if capacity < 0 or load < capacity else 0
                load += 1
    p = 0.0
    for t in range(tokens):
        p += probs[t, e]
    balance[e] = load / (tokens * k) * (p / tokens)


def _router_device(logits, bias, method, top_k, n_group, topk_group, routed_scaling_factor,
                   capacity_factor):
    """Run the routing kernels on contiguous compute-dtype arrays; return host arrays."""
    tokens, experts = logits.shape
    dt = logits.dtype
    idx_buf = guarded_host_buffer(tokens * top_k, np.int64)
    w_buf = guarded_host_buffer(tokens * top_k, dt)
    kept_buf = guarded_host_buffer(tokens * top_k, np.int8)
    d_idx, d_w, d_kept = cuda.to_device(idx_buf), cuda.to_device(w_buf), cuda.to_device(kept_buf)
    d_probs = cuda.device_array((tokens, experts), dtype=dt)
    d_lse = cuda.device_array(tokens, dtype=dt)
    d_balance = cuda.device_array(experts, dtype=dt)
    shape = (tokens, top_k)
    _route[_blocks(tokens), THREADS](
        cuda.to_device(logits), cuda.to_device(bias), METHODS.index(method), top_k, n_group,
        topk_group, dt.type(routed_scaling_factor), cuda.device_array((tokens, experts), dtype=dt),
        cuda.device_array((tokens, experts), dtype=dt), cuda.device_array((tokens, n_group), dtype=dt),
        interior(d_idx, tokens * top_k).reshape(shape), interior(d_w, tokens * top_k).reshape(shape),
        d_probs, d_lse)
    capacity = math.ceil(capacity_factor * tokens * top_k / experts) if capacity_factor else -1
    _capacity_and_balance[_blocks(experts), THREADS](
        interior(d_idx, tokens * top_k).reshape(shape), d_probs, capacity,
        interior(d_kept, tokens * top_k).reshape(shape), d_balance)
    out = {}
    for name, d_buf, n in (("expert_ids", d_idx, tokens * top_k), ("weights", d_w, tokens * top_k),
                           ("kept", d_kept, tokens * top_k)):
        buf = d_buf.copy_to_host()
        check_guards(buf, n, f"numba-cuda moe router ({name})")
        out[name] = interior(buf, n).reshape(shape)
    out["kept"] = out["kept"].astype(bool)
    out["aux_loss"] = experts * d_balance.copy_to_host().sum()
    out["z_loss"] = d_lse.copy_to_host().mean()
    return out


def moe_router(logits, bias, method="mixtral", top_k=2, n_group=1, topk_group=1,
               routed_scaling_factor=1.0, capacity_factor=0.0):
    logits, bias = moe_router_args(logits, bias, method, top_k, n_group, topk_group,
                                   routed_scaling_factor, capacity_factor)
    out = _router_device(widen(logits), widen(bias), method, top_k, n_group, topk_group,
                         routed_scaling_factor, capacity_factor)
    dtype = logits.dtype
    return {"expert_ids": out["expert_ids"].copy(), "weights": out["weights"].astype(dtype),
            "kept": out["kept"], "aux_loss": np.full(1, out["aux_loss"], dtype=dtype),
            "z_loss": np.full(1, out["z_loss"], dtype=dtype)}


@cuda.jit
def _matmul_t(a, w, out):
    """out[i, o] = sum_d a[i, d] w[o, d]  (router logits: a = hidden, w = gate_weight)."""
    i, o = cuda.grid(2)
    if i < out.shape[0] and o < out.shape[1]:
        s = 0.0
        for d in range(a.shape[1]):
            s += a[i, d] * w[o, d]
        out[i, o] = s


@cuda.jit
def _grouped_up(h, rows, row_expert, w_gate, w_up, act):
    """act[r, f] = silu(w_gate[e] . h[rows[r]]) * (w_up[e] . h[rows[r]]),  e = row_expert[r]."""
    r, f = cuda.grid(2)
    if r < act.shape[0] and f < act.shape[1]:
        e = row_expert[r]
        g = 0.0
        u = 0.0
        for d in range(h.shape[1]):
            g += w_gate[e, f, d] * h[rows[r], d]
            u += w_up[e, f, d] * h[rows[r], d]
        act[r, f] = g / (1.0 + math.exp(-g)) * u


@cuda.jit
def _grouped_down(act, row_expert, w_down, out):
    """out[r, d] = sum_f w_down[e, d, f] act[r, f]."""
    r, d = cuda.grid(2)
    if r < out.shape[0] and d < out.shape[1]:
        e = row_expert[r]
        s = 0.0
        for f in range(act.shape[1]):
            s += w_down[e, d, f] * act[r, f]
        out[r, d] = s


@cuda.jit
def _combine(expert_out, position, weights, shared_out, use_shared, y):
    """y[t, d] = sum over kept slots j (slot order) of weights[t, j] * expert_out[position[t, j], d]
    (+ shared_out[t, d])."""
    t, d = cuda.grid(2)
    if t < y.shape[0] and d < y.shape[1]:
        s = 0.0
        for j in range(position.shape[1]):
            if position[t, j] >= 0:
                s += weights[t, j] * expert_out[position[t, j], d]
        if use_shared:
            s += shared_out[t, d]
        y[t, d] = s


def _grid2(n, m):
    """At least one block per axis (a zero-size grid is not a valid launch); the kernels
    check their bounds."""
    side = 8 if simulated() else 16
    return (max(1, (n + side - 1) // side), max(1, (m + side - 1) // side)), (side, side)


def _grouped_swiglu(d_h, rows, row_expert, d_wg, d_wu, d_wd, dim, ffn, dtype):
    """Expert outputs (len(rows), D) for the dispatched rows, on the device."""
    n = len(rows)
    d_rows, d_row_expert = cuda.to_device(rows), cuda.to_device(row_expert)
    d_act = cuda.device_array((n, ffn), dtype=dtype)
    _grouped_up[_grid2(n, ffn)](d_h, d_rows, d_row_expert, d_wg, d_wu, d_act)
    d_out = cuda.device_array((n, dim), dtype=dtype)
    _grouped_down[_grid2(n, dim)](d_act, d_row_expert, d_wd, d_out)
    return d_out


def moe_layer(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
              shared_down, method="mixtral", top_k=2, n_group=1, topk_group=1,
              routed_scaling_factor=1.0, capacity_factor=0.0, use_shared=False):
    h, gate_weight, bias, w_gate, w_up, w_down, shared = moe_layer_args(
        hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up, shared_down,
        method, top_k, n_group, topk_group, routed_scaling_factor, capacity_factor, use_shared)
    dtype, (tokens, dim) = h.dtype, h.shape
    if tokens == 0:  # nothing to route, no kernel to launch
        return {"y": h.copy(), "expert_ids": np.zeros((0, top_k), np.int64),
                "weights": np.zeros((0, top_k), dtype), "kept": np.zeros((0, top_k), np.bool_)}
    hc = widen(h)
    dt = hc.dtype
    experts, ffn = w_gate.shape[:2]
    d_h = cuda.to_device(hc)
    d_logits = cuda.device_array((tokens, experts), dtype=dt)
    _matmul_t[_grid2(tokens, experts)](d_h, cuda.to_device(widen(gate_weight)), d_logits)
    routed = _router_device(d_logits.copy_to_host(), widen(bias), method, top_k, n_group,
                            topk_group, routed_scaling_factor, capacity_factor)
    idx, weights, kept = routed["expert_ids"], routed["weights"], routed["kept"]
    # dispatch: kept assignments sorted by expert, token order within an expert
    tok, slot = np.nonzero(kept)
    order = np.lexsort((tok, idx[tok, slot]))
    tok, slot = tok[order], slot[order]
    position = np.full((tokens, top_k), -1, dtype=np.int64)
    position[tok, slot] = np.arange(tok.size)
    d_out = (_grouped_swiglu(d_h, tok.astype(np.int64), idx[tok, slot].astype(np.int64),
                             cuda.to_device(widen(w_gate)), cuda.to_device(widen(w_up)),
                             cuda.to_device(widen(w_down)), dim, ffn, dt)
             if tok.size else cuda.device_array((1, dim), dtype=dt))
    if shared is not None:
        sg, su, sd = (widen(w)[None] for w in shared)  # one expert: (1, S, D), (1, S, D), (1, D, S)
        d_shared = _grouped_swiglu(d_h, np.arange(tokens, dtype=np.int64), np.zeros(tokens, np.int64),
                                   cuda.to_device(sg), cuda.to_device(su), cuda.to_device(sd), dim,
                                   sg.shape[1], dt)
    else:
        d_shared = cuda.device_array((1, 1), dtype=dt)
    y_buf = guarded_host_buffer(hc.size, dt)
    d_y = cuda.to_device(y_buf)
    _combine[_grid2(tokens, dim)](d_out, cuda.to_device(position), cuda.to_device(weights),
                                  d_shared, shared is not None, interior(d_y, hc.size).reshape(hc.shape))
    y_buf = d_y.copy_to_host()
    check_guards(y_buf, hc.size, "numba-cuda moe_layer (y)")
    return {"y": interior(y_buf, hc.size).reshape(hc.shape).astype(dtype),
            "expert_ids": idx.copy(), "weights": weights.astype(dtype), "kept": kept}
