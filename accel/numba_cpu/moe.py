"""MoE routing and the MoE layer on numba-cpu (reference: llmref.ref.moe).

Routing is the shared loop of llmref.accel.kernels.moe over every token, the tokens in
contiguous ranges spread across threads (prange; llmref.accel.numba_cpu._threads); capacity and the
balance terms are one pass over the assignments here (the shared loop visits them once per
expert, as numba-cuda's threads do). The layer's expert GEMMs are not shared either: numba-cpu sorts the kept
assignments by expert (dispatch, compiled) and runs one SwiGLU GEMM chain per expert on its
gathered rows through NumPy's BLAS (numba's own `@` would need SciPy, and a hand-written
row-dot loop was 10x slower than the reference), the down projection written in place into
the expert's output rows (the compiled, parallel SwiGLU gate of _activation was slower here:
167 against 94 ms a layer, its threads meeting BLAS's); numba-cuda runs its own grouped
kernels. The combine is kernels.combine_rows' sums a token row at a time, vectorised along D:
the shared loop divides a flat index per output element, 2.8 ms of the bench shape's layer
(a prange over the tokens would add 3 s of compiling per dtype for a fraction of a ms).
Checked by the reference's moe_router_args / moe_layer_args; float16/bfloat16 inputs are
widened to float32 and the outputs rounded once.

The expert weights' values are checked by the GEMMs' own reading of them, not by a pass of
their own (20 ms of a 115 ms layer on the bench shape, 200 MB of weights): with the hidden
rows finite, a NaN or inf in a weight an expert's GEMM reads makes every output row it
touches NaN or inf (0 * inf is NaN too), so a y that is not finite -- or a non-finite weight
of an expert no token reached -- sends the call back to moe_layer_args for the reference's
error; where it finds none, the sums overflowed and y stands.
"""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import moe as kernels
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.moe import METHODS, moe_layer_args, moe_router_args

_route_tokens = numba.njit(cache=True)(kernels.route_tokens)
ROUTE_TASKS = 16  # parallel tasks the tokens are dealt to, in contiguous ranges


@numba.njit(cache=True)
def _capacity_and_balance(idx, probs, capacity, kept, balance):
    """kernels.capacity_and_balance in one slot-major pass over the assignments, each expert's
    load counted as it goes, and P_e summed over the tokens in the same order (float64): the
    shared loop, one expert per CUDA thread, reads every assignment once per expert (256 x
    32768 on the bench shape: 10 ms, against 0.2 ms here)."""
    tokens, k = idx.shape
    experts = probs.shape[1]
    load = np.zeros(experts, np.int64)
    for j in range(k):
        for t in range(tokens):
            e = idx[t, j]
            kept[t, j] = 1 if capacity < 0 or load[e] < capacity else 0
            load[e] += 1
    p = np.zeros(experts)  # (E,) float64
    for t in range(tokens):
        for e in range(experts):
            p[e] += probs[t, e]
    for e in range(experts):
        balance[e] = load[e] / (tokens * k) * (p[e] / tokens)


@threaded_loop()
def _route_token_ranges(logits, bias, method, top_k, n_group, topk_group, scale, scores, choice,
                        group_score, idx, weights, probs, lse_sq):
    """The shared routing loop over ROUTE_TASKS contiguous ranges of tokens, in parallel: each
    token's rows are its own, and a range of whole tokens shares no cache line of a small row
    (idx, weights) with another range's but at its ends, where every-n-th tokens would share
    most of them."""
    tokens = logits.shape[0]
    for task in numba.prange(ROUTE_TASKS):
        a, b = task * tokens // ROUTE_TASKS, (task + 1) * tokens // ROUTE_TASKS
        _route_tokens(logits[a:b], bias, method, top_k, n_group, topk_group, scale, 0, 1, scores[a:b],
                      choice[a:b], group_score[a:b], idx[a:b], weights[a:b], probs[a:b], lse_sq[a:b])


def _router(logits, bias, method, top_k, n_group, topk_group, routed_scaling_factor,
            capacity_factor):
    """(expert ids, weights, kept, aux_loss, z_loss) of checked compute-dtype logits (T, E)."""
    (tokens, experts), dt = logits.shape, logits.dtype
    idx = np.empty((tokens, top_k), np.int64)
    weights = np.empty((tokens, top_k), dt)
    probs, lse_sq = np.empty_like(logits), np.empty(tokens, dt)
    _route_token_ranges(logits.size, logits, bias, METHODS.index(method), top_k, n_group, topk_group,
                        float(routed_scaling_factor), np.empty_like(logits), np.empty_like(logits),
                        np.empty((tokens, n_group), dt), idx, weights, probs, lse_sq)
    kept, balance = np.empty((tokens, top_k), np.int8), np.empty(experts, dt)
    capacity = math.ceil(capacity_factor * tokens * top_k / experts) if capacity_factor else -1
    _capacity_and_balance(idx, probs, capacity, kept, balance)
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


def _swiglu_rows(x, w_gate, w_up, w_down, out):
    """out = W_down (silu(W_gate x) * (W_up x)) for the rows of x (n, D): one GEMM per
    projection, out (n, D). The products are taken transposed, W times the columns x^T, so
    that both operands of each GEMM are row-major as stored: OpenBLAS (NumPy's) ran
    x @ W.T slower (n = 64, D = 1024, F = 2048 on one thread: a gate projection 3.65 against
    3.03 ms). The bench's layer, measured in one process: 103-113 ms against 110-118 ms on
    one thread, 59-62 against 66-72 ms on two."""
    xt = np.ascontiguousarray(x.T)  # (D, n)
    g = w_gate @ xt  # (F, n)
    np.matmul(w_down, g / (1 + np.exp(-g)) * (w_up @ xt), out=out.T)  # (D, n) into out's columns


@numba.njit(cache=True)
def _combine(expert_out, position, weights, shared_out, use_shared, y):
    """y[t, d] = sum over the kept slots j of token t, in slot order, of weights[t, j] *
    expert_out[position[t, j], d] (position -1: dropped), plus shared_out[t, d] if use_shared:
    kernels.combine_rows' sums, in float64 in the same order, a token row at a time."""
    tokens, dim = y.shape
    for t in range(tokens):
        acc = np.zeros(dim)  # (D,) float64, as combine_rows' s
        for j in range(position.shape[1]):
            if position[t, j] >= 0:
                w, row = weights[t, j], expert_out[position[t, j]]
                for d in range(dim):
                    acc[d] += w * row[d]
        for d in range(dim):
            y[t, d] = acc[d] + shared_out[t, d] if use_shared else acc[d]


def moe_layer(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
              shared_down, method="mixtral", top_k=2, n_group=1, topk_group=1,
              routed_scaling_factor=1.0, capacity_factor=0.0, use_shared=False):
    args = (hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up, shared_down,
            method, top_k, n_group, topk_group, routed_scaling_factor, capacity_factor, use_shared)
    h, gate_weight, bias, w_gate, w_up, w_down, shared = moe_layer_args(*args, expert_values=False)
    dtype, tokens = h.dtype, h.shape[0]
    if tokens == 0:  # nothing to route, no weight read: every one checked here
        moe_layer_args(*args)
        return {"y": h.copy(), "expert_ids": np.zeros((0, top_k), np.int64),
                "weights": np.zeros((0, top_k), dtype), "kept": np.zeros((0, top_k), np.bool_)}
    hc = widen(h)
    idx, weights, kept, _, _ = _router(hc @ widen(gate_weight).T, widen(bias), method, top_k,
                                       n_group, topk_group, routed_scaling_factor, capacity_factor)
    # grouped per-expert GEMMs: gather each expert's rows, one SwiGLU chain per expert
    w_gate, w_up, w_down = widen(w_gate), widen(w_up), widen(w_down)
    rows, offsets, position = _dispatch(idx, kept, w_gate.shape[0])
    out = np.empty((rows.shape[0], h.shape[1]), dtype=hc.dtype)  # (assignments, D)
    with np.errstate(over="ignore", invalid="ignore"):  # NaN and inf are looked for in y below
        for e in range(w_gate.shape[0]):
            mine = slice(offsets[e], offsets[e + 1])
            if mine.start < mine.stop:
                _swiglu_rows(hc[rows[mine]], w_gate[e], w_up[e], w_down[e], out[mine])
        shared_out = np.zeros((1, 1), hc.dtype)  # unread without a shared expert
        if shared is not None:
            shared_out = np.empty_like(hc)  # (T, D)
            _swiglu_rows(hc, *(widen(w) for w in shared), shared_out)
    y = np.empty_like(hc)
    _combine(out, position, weights, shared_out, shared is not None, y)
    unread = np.flatnonzero(offsets[1:] == offsets[:-1])  # experts no kept token reached
    if not (np.isfinite(y).all() and all(np.isfinite(w[e]).all() for w in (w_gate, w_up, w_down)
                                         for e in unread)):
        moe_layer_args(*args)  # the reference's error for a NaN or inf weight, else an overflow
    return {"y": y.astype(dtype, copy=False), "expert_ids": idx, "weights": weights.astype(dtype),
            "kept": kept}
