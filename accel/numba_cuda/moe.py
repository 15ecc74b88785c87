"""MoE routing and the MoE layer on numba-cuda (reference: llmref.ref.moe).

Routing (one thread per token), capacity and the balance terms (one thread per expert) and
the combine (one thread per output element) run the shared loops of llmref.accel.kernels.moe.
The layer's GEMMs are this backend's own, one thread per output element: the router logits,
then, on the assignments the host sorted by expert (dispatch), the grouped SwiGLU up and down
projections; numba-cpu gives its GEMMs to NumPy's BLAS instead, which has no numba.cuda
counterpart. Checked by the reference's moe_router_args / moe_layer_args; float16/bfloat16
inputs are widened to float32 on the host, every output buffer is guarded and the outputs
are rounded once.
"""
import math

import numpy as np
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import moe as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.moe import METHODS, moe_layer_args, moe_router_args

_route_tokens = cuda.jit(device=True)(kernels.route_tokens)
_capacity_and_balance = cuda.jit(device=True)(kernels.capacity_and_balance)
_combine_rows = cuda.jit(device=True)(kernels.combine_rows)


@cuda.jit
def _route(logits, bias, method, top_k, n_group, topk_group, scale, scores, choice, group_score,
           idx, weights, probs, lse_sq):
    _route_tokens(logits, bias, method, top_k, n_group, topk_group, scale, cuda.grid(1),
                  cuda.gridsize(1), scores, choice, group_score, idx, weights, probs, lse_sq)


@cuda.jit
def _capacity(idx, probs, capacity, kept, balance):
    _capacity_and_balance(idx, probs, capacity, cuda.grid(1), cuda.gridsize(1), kept, balance)


@cuda.jit
def _combine(expert_out, position, weights, shared_out, use_shared, y):
    _combine_rows(expert_out, position, weights, shared_out, use_shared, cuda.grid(1),
                  cuda.gridsize(1), y)


def _router(logits, bias, method, top_k, n_group, topk_group, routed_scaling_factor,
            capacity_factor):
    """(expert ids, weights, kept, aux_loss, z_loss) of checked compute-dtype logits (T, E)."""
    (tokens, experts), dt = logits.shape, logits.dtype
    idx = Guarded((tokens, top_k), np.int64, "numba-cuda moe router (expert_ids)")
    weights = Guarded((tokens, top_k), dt, "numba-cuda moe router (weights)")
    kept = Guarded((tokens, top_k), np.int8, "numba-cuda moe router (kept)")
    d_probs, d_lse_sq = cuda.device_array((tokens, experts), dt), cuda.device_array(tokens, dt)
    _route[grid(tokens), THREADS](
        cuda.to_device(logits), cuda.to_device(bias), METHODS.index(method), top_k, n_group,
        topk_group, float(routed_scaling_factor), cuda.device_array((tokens, experts), dt),
        cuda.device_array((tokens, experts), dt), cuda.device_array((tokens, n_group), dt),
        idx.device, weights.device, d_probs, d_lse_sq)
    d_balance = cuda.device_array(experts, dt)
    capacity = math.ceil(capacity_factor * tokens * top_k / experts) if capacity_factor else -1
    _capacity[grid(experts), THREADS](idx.device, d_probs, capacity, kept.device, d_balance)
    return (idx.result(), weights.result(), kept.result().astype(bool),
            experts * d_balance.copy_to_host().sum(), d_lse_sq.copy_to_host().mean())


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


@cuda.jit
def _matmul_t(a, w, out):
    """out[i, o] = sum_d a[i, d] w[o, d]  (router logits: a = hidden, w = gate_weight)."""
    width = out.shape[1]
    for k in range(cuda.grid(1), out.shape[0] * width, cuda.gridsize(1)):
        i, o = k // width, k % width
        s = 0.0
        for d in range(a.shape[1]):
            s += a[i, d] * w[o, d]
        out[i, o] = s


@cuda.jit
def _grouped_up(h, rows, row_expert, w_gate, w_up, act):
    """act[r, f] = silu(w_gate[e, f] . h[rows[r]]) * (w_up[e, f] . h[rows[r]]),  e = row_expert[r]."""
    ffn = act.shape[1]
    for k in range(cuda.grid(1), act.shape[0] * ffn, cuda.gridsize(1)):
        r, f = k // ffn, k % ffn
        e = row_expert[r]
        g = 0.0
        u = 0.0
        for d in range(h.shape[1]):
            g += w_gate[e, f, d] * h[rows[r], d]
            u += w_up[e, f, d] * h[rows[r], d]
        act[r, f] = g / (1.0 + math.exp(-g)) * u


@cuda.jit
def _grouped_down(act, row_expert, w_down, out):
    """out[r, d] = sum_f w_down[e, d, f] act[r, f],  e = row_expert[r]."""
    dim = out.shape[1]
    for k in range(cuda.grid(1), out.shape[0] * dim, cuda.gridsize(1)):
        r, d = k // dim, k % dim
        e = row_expert[r]
        s = 0.0
        for f in range(act.shape[1]):
            s += w_down[e, d, f] * act[r, f]
        out[r, d] = s


def _grouped_swiglu(d_h, rows, row_expert, d_wg, d_wu, d_wd, dim, ffn, dtype):
    """Expert outputs (len(rows), D) for the dispatched rows, on the device."""
    n = len(rows)
    d_rows, d_row_expert = cuda.to_device(rows), cuda.to_device(row_expert)
    d_act = cuda.device_array((n, ffn), dtype=dtype)
    _grouped_up[grid(n * ffn), THREADS](d_h, d_rows, d_row_expert, d_wg, d_wu, d_act)
    d_out = cuda.device_array((n, dim), dtype=dtype)
    _grouped_down[grid(n * dim), THREADS](d_act, d_row_expert, d_wd, d_out)
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
    _matmul_t[grid(tokens * experts), THREADS](d_h, cuda.to_device(widen(gate_weight)), d_logits)
    idx, weights, kept, _, _ = _router(d_logits.copy_to_host(), widen(bias), method, top_k,
                                       n_group, topk_group, routed_scaling_factor, capacity_factor)
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
    y = Guarded(hc.shape, dt, "numba-cuda moe_layer (y)")
    _combine[grid(hc.size), THREADS](d_out, cuda.to_device(position), cuda.to_device(weights),
                                     d_shared, shared is not None, y.device)
    return {"y": y.result().astype(dtype), "expert_ids": idx, "weights": weights.astype(dtype),
            "kept": kept}
