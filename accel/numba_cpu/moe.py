"""MoE routing and the MoE layer on numba-cpu (reference: llmref.ref.moe).

Routing and capacity are the shared loops of llmref.accel.kernels.moe over every token and
expert. The layer's expert work is not: numba-cpu sorts the kept assignments by expert
(dispatch), gathers their hidden rows once, and runs the grouped SwiGLU of every expert in
two parallel loops (prange) written here so LLVM vectorises them:

    act[a] = silu(W_gate[e] x_a) * (W_up[e] x_a)    over (expert, FB rows of F) items: 4 rows
                                                     x_a at a time (in L1) against the item's
                                                     gate and up rows, a 4 x 2 tile of dots
    out[a] = W_down[e] act[a]                       over (expert, FB rows of D) items, the same
                                                     4 x 2 tile against 2 rows of W_down

then the combine (a third prange, over the tokens): y_t = sum_j w_tj out[position[t, j]]
[+ the shared expert, run as a group of one expert over every token]. Dot products sum in
the compute dtype in any order; silu(g) = g sigmoid(g) takes its exponential of -|g| from
llmref.accel.numba_cpu._exp (float64, vectorised). Three parallel loops in all, where one
NumPy GEMM per projection and expert (24 here) each waited on OpenBLAS's threads: on a
machine whose cores are shared, those waits made the layer several times slower (numba-cuda
runs its own grouped kernels). Checked by the reference's moe_router_args / moe_layer_args;
float16/bfloat16 inputs are widened to float32 and the outputs rounded once.
"""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import moe as kernels
from llmref.accel.numba_cpu._exp import exp_nonpositive
from llmref.ref.moe import METHODS, moe_layer_args, moe_router_args

_route_tokens = numba.njit(cache=True)(kernels.route_tokens)
_capacity_and_balance = numba.njit(cache=True)(kernels.capacity_and_balance)


def _router(logits, bias, method, top_k, n_group, topk_group, routed_scaling_factor,
            capacity_factor):
    """(expert ids, weights, kept, aux_loss, z_loss) of checked compute-dtype logits (T, E)."""
    (tokens, experts), dt = logits.shape, logits.dtype
    idx = np.empty((tokens, top_k), np.int64)
    weights = np.empty((tokens, top_k), dt)
    probs, lse_sq = np.empty_like(logits), np.empty(tokens, dt)
    _route_tokens(logits, bias, METHODS.index(method), top_k, n_group, topk_group,
                  float(routed_scaling_factor), 0, 1, np.empty_like(logits), np.empty_like(logits),
                  np.empty((tokens, n_group), dt), idx, weights, probs, lse_sq)
    kept, balance = np.empty((tokens, top_k), np.int8), np.empty(experts, dt)
    capacity = math.ceil(capacity_factor * tokens * top_k / experts) if capacity_factor else -1
    _capacity_and_balance(idx, probs, capacity, 0, 1, kept, balance)
    return idx, weights, kept.astype(bool), experts * balance.sum(), lse_sq.mean()


def moe_router(logits, bias, method="mixtral", top_k=2, n_group=1, topk_group=1,
               routed_scaling_factor=1.0, capacity_factor=0.0):
    # The spec's signature and its one checker, as in every backend (the kernels differ below).
    logits, bias = moe_router_args(logits, bias, method, top_k, n_group, topk_group,
                                   routed_scaling_factor, capacity_factor)
    idx, weights, kept, aux, z = _router(widen(logits), widen(bias), method, top_k, n_group,
                                         topk_group, routed_scaling_factor, capacity_factor)
    dtype = logits.dtype
    return {"expert_ids": idx, "weights": weights.astype(dtype), "kept": kept,
            "aux_loss": np.full(1, aux, dtype=dtype), "z_loss": np.full(1, z, dtype=dtype)}


@numba.njit(cache=True)
def _dispatch(idx, kept, experts):
    """The kept assignments sorted by expert (within an expert: token order, then slot):
    rows[i] of assignment i, offsets (E + 1,) so expert e owns rows[offsets[e]:offsets[e + 1]],
    and position[t, j] = the assignment index of slot j of token t (-1: dropped)."""
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
    position = np.full((tokens, k), -1, dtype=np.int64)
    for t in range(tokens):
        for j in range(k):
            if kept[t, j]:
                e = idx[t, j]
                rows[fill[e]], position[t, j] = t, fill[e]
                fill[e] += 1
    return rows, offsets, position


FB = 8  # rows of W_gate and W_up, or of W_down, per work item


@numba.njit(cache=True, fastmath={"reassoc", "nsz", "contract"})
def _dot4x2(x, a, hi, wa, f, wb, g, zero):
    """x[a + i] . wa[f] and x[a + i] . wb[g] for i < 4 (rows past hi - 1 repeat it), summed
    in the dtype of `zero` in any order."""
    r1, r2, r3 = min(a + 1, hi - 1), min(a + 2, hi - 1), min(a + 3, hi - 1)
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = zero
    for d in range(x.shape[1]):
        p = wa[f, d]
        q = wb[g, d]
        x0, x1, x2, x3 = x[a, d], x[r1, d], x[r2, d], x[r3, d]
        a0 += x0 * p
        a1 += x1 * p
        a2 += x2 * p
        a3 += x3 * p
        b0 += x0 * q
        b1 += x1 * q
        b2 += x2 * q
        b3 += x3 * q
    return a0, a1, a2, a3, b0, b1, b2, b3


@numba.njit(cache=True, fastmath={"contract"})  # fused multiply-adds in exp's polynomial
def _gate_up_item(x, lo, hi, w_gate, w_up, f0, f1, zero, act):
    """act[a, f] = silu(w_gate[f] . x[a]) * (w_up[f] . x[a]) for lo <= a < hi, f0 <= f < f1;
    silu(g) = g / (1 + e) (g >= 0) or g e / (1 + e) (g < 0), e = exp(-|g|), in float64."""
    width = f1 - f0
    n = (hi - lo) * width
    g, u = np.empty(n), np.empty(n)
    t, e = np.empty(n), np.empty(n)
    half, rest = np.empty(n, np.int64), np.empty(n, np.int64)
    for a in range(lo, hi, 4):  # 4 rows of x stay in L1 while the item's weight rows pass
        for f in range(f0, f1):
            g0, g1, g2, g3, u0, u1, u2, u3 = _dot4x2(x, a, hi, w_gate, f, w_up, f, zero)
            i = (a - lo) * width + f - f0
            g[i], u[i] = g0, u0
            if a + 1 < hi:
                g[i + width], u[i + width] = g1, u1
            if a + 2 < hi:
                g[i + 2 * width], u[i + 2 * width] = g2, u2
            if a + 3 < hi:
                g[i + 3 * width], u[i + 3 * width] = g3, u3
    for i in range(n):
        t[i] = -abs(g[i])
    exp_nonpositive(t, e, half, rest, n)
    for a in range(lo, hi):
        for j in range(width):
            i = (a - lo) * width + j
            s = (1.0 if g[i] >= 0 else e[i]) / (1.0 + e[i])
            act[a, f0 + j] = g[i] * s * u[i]


@numba.njit(cache=True, parallel=True)
def _gate_up(x, offsets, w_gate, w_up, zero, act):
    """act[a] = silu(W_gate[e] x[a]) * (W_up[e] x[a]) for the rows a of every expert e
    (offsets[e] <= a < offsets[e + 1]); x (A, D), w_gate, w_up (E, F, D), act (A, F)."""
    experts, ffn = w_gate.shape[0], w_gate.shape[1]
    blocks = (ffn + FB - 1) // FB
    for item in numba.prange(experts * blocks):
        e, f0 = item // blocks, (item % blocks) * FB
        if offsets[e] < offsets[e + 1]:
            _gate_up_item(x, offsets[e], offsets[e + 1], w_gate[e], w_up[e], f0,
                          min(ffn, f0 + FB), zero, act)


@numba.njit(cache=True, parallel=True)
def _down(act, offsets, w_down, zero, out):
    """out[a] = W_down[e] act[a] for the rows a of every expert e; act (A, F),
    w_down (E, D, F), out (A, D)."""
    experts, dim = w_down.shape[0], w_down.shape[1]
    blocks = (dim + FB - 1) // FB
    for item in numba.prange(experts * blocks):
        e, d0 = item // blocks, (item % blocks) * FB
        lo, hi = offsets[e], offsets[e + 1]
        w = w_down[e]
        for a in range(lo, hi, 4):
            for d in range(d0, min(dim, d0 + FB), 2):
                d1 = min(d + 1, dim - 1)
                p0, p1, p2, p3, q0, q1, q2, q3 = _dot4x2(act, a, hi, w, d, w, d1, zero)
                out[a, d], out[a, d1] = p0, q0
                if a + 1 < hi:
                    out[a + 1, d], out[a + 1, d1] = p1, q1
                if a + 2 < hi:
                    out[a + 2, d], out[a + 2, d1] = p2, q2
                if a + 3 < hi:
                    out[a + 3, d], out[a + 3, d1] = p3, q3


def _experts(x, offsets, w_gate, w_up, w_down):
    """W_down[e] (silu(W_gate[e] x_a) * (W_up[e] x_a)) for the rows a of x (A, D) that
    offsets (E + 1,) gives each expert e: (A, D)."""
    zero = x.dtype.type(0)
    act = np.empty((x.shape[0], w_gate.shape[1]), x.dtype)  # (A, F)
    _gate_up(x, offsets, w_gate, w_up, zero, act)
    out = np.empty((x.shape[0], w_down.shape[1]), x.dtype)  # (A, D)
    _down(act, offsets, w_down, zero, out)
    return out


@numba.njit(cache=True, parallel=True)
def _combine(expert_out, position, weights, shared_out, use_shared, y):
    """y[t] = sum over the kept slots j of token t, in slot order, of weights[t, j] *
    expert_out[position[t, j]] (position -1: dropped), plus shared_out[t] if use_shared."""
    for t in numba.prange(y.shape[0]):
        y[t, :] = 0
        for j in range(position.shape[1]):
            p = position[t, j]
            if p >= 0:
                w = weights[t, j]
                for d in range(y.shape[1]):
                    y[t, d] += w * expert_out[p, d]
        if use_shared:
            for d in range(y.shape[1]):
                y[t, d] += shared_out[t, d]


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
    idx, weights, kept, _, _ = _router(hc @ widen(gate_weight).T, widen(bias), method, top_k,
                                       n_group, topk_group, routed_scaling_factor, capacity_factor)
    rows, offsets, position = _dispatch(idx, kept, w_gate.shape[0])
    out = _experts(hc[rows], offsets, widen(w_gate), widen(w_up), widen(w_down))  # (A, D)
    if shared is not None:  # one expert over every token
        s_gate, s_up, s_down = (widen(w)[None] for w in shared)  # (1, S, D), (1, S, D), (1, D, S)
        shared_out = _experts(hc, np.array([0, tokens], np.int64), s_gate, s_up, s_down)  # (T, D)
    else:
        shared_out = np.zeros((1, 1), hc.dtype)  # unread
    y = np.empty_like(hc)
    _combine(out, position, weights, shared_out, shared is not None, y)
    return {"y": y.astype(dtype, copy=False), "expert_ids": idx, "weights": weights.astype(dtype),
            "kept": kept}
