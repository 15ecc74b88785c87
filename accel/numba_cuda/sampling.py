"""Logit processors and deterministic sampling as a numba.cuda kernel: one thread per row.

A thread owns its row of the work arrays (processed logits z, probabilities, distances). No
sort: top-k, top-p and typical-p walk the row's distinct values in rank order, one pass per
distinct value (max of the values below the current one), summing equal values in ascending
token id, which is the spec's order. Top-p first narrows the walk to a candidate prefix (tokens
above a halving threshold), so it costs O(V log(1/t) + n_candidates^2) per row; top-k costs
O(V k) and typical-p O(V * levels).
"""
import math

import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import widen
from llmref.backends import simulated
from llmref.ref.sampling import ORDERS, sample_tokens_args

THREADS = 32 if simulated() else 64
STEP_CODES = {"penalties": 0, "temperature": 1, "top_k": 2, "top_p": 3, "min_p": 4, "typical_p": 5}


@cuda.jit(device=True)
def _softmax(z, p, b):
    m = -math.inf
    for v in range(z.shape[1]):
        m = max(m, z[b, v])
    s = 0.0
    for v in range(z.shape[1]):
        p[b, v] = math.exp(z[b, v] - m)
        s += p[b, v]
    for v in range(z.shape[1]):
        p[b, v] /= s


@cuda.jit(device=True)
def _next_below(a, b, cur):
    """max of a[b, v] < cur (-inf if none)."""
    best = -math.inf
    for v in range(a.shape[1]):
        if a[b, v] < cur and a[b, v] > best:
            best = a[b, v]
    return best


@cuda.jit(device=True)
def _top_k(z, b, k):
    if k == 0:
        return
    cur = math.inf
    count = 0
    while count < k:
        cur = _next_below(z, b, cur)
        for v in range(z.shape[1]):
            if z[b, v] == cur:
                count += 1
        if cur == -math.inf:
            break
    for v in range(z.shape[1]):
        if z[b, v] < cur:
            z[b, v] = -math.inf


@cuda.jit(device=True)
def _top_p(z, p, cand, b, top_p):
    """Candidates first: halve t from max p until mass(p >= t) reaches top_p (plus a margin for
    summation order); those tokens are a prefix of the descending order holding the crossing
    token, everything else is removed. Then walk the candidates' distinct values."""
    if top_p >= 1:
        return
    _softmax(z, p, b)
    vocab = z.shape[1]
    t = 0.0
    for v in range(vocab):
        t = max(t, p[b, v])
    while True:
        mass = 0.0
        for v in range(vocab):
            if p[b, v] >= t:
                mass += p[b, v]
        if mass >= top_p + 1e-6 or t == 0.0:
            break
        t = t * 0.25 if t > 1e-30 else 0.0
    n = 0
    for v in range(vocab):
        if p[b, v] >= t and p[b, v] > 0:
            cand[b, n] = v  # ascending token id
            n += 1
        else:
            z[b, v] = -math.inf
    cur = math.inf
    mass_before = 0.0
    while mass_before < top_p:
        nxt = -math.inf  # the largest candidate probability below cur
        for i in range(n):
            q = p[b, cand[b, i]]
            if q < cur and q > nxt:
                nxt = q
        if nxt == -math.inf:
            return
        cur = nxt
        for i in range(n):  # equal values in ascending token id
            v = cand[b, i]
            if p[b, v] == cur:
                if not mass_before < top_p:
                    z[b, v] = -math.inf
                mass_before += p[b, v]
    for i in range(n):
        if p[b, cand[b, i]] < cur:
            z[b, cand[b, i]] = -math.inf


@cuda.jit(device=True)
def _min_p(z, p, b, min_p):
    if min_p == 0:
        return
    _softmax(z, p, b)
    top = 0.0
    for v in range(z.shape[1]):
        top = max(top, p[b, v])
    for v in range(z.shape[1]):
        if p[b, v] < min_p * top:
            z[b, v] = -math.inf


@cuda.jit(device=True)
def _typical(z, p, dist, b, mass):
    if mass >= 1:
        return
    _softmax(z, p, b)
    m = -math.inf
    for v in range(z.shape[1]):
        m = max(m, z[b, v])
    s = 0.0
    for v in range(z.shape[1]):
        s += math.exp(z[b, v] - m)
    log_s = math.log(s)
    entropy = 0.0
    for v in range(z.shape[1]):
        if p[b, v] > 0:
            entropy -= p[b, v] * (z[b, v] - m - log_s)
    for v in range(z.shape[1]):
        dist[b, v] = -abs(-(z[b, v] - m - log_s) - entropy) if p[b, v] > 0 else -math.inf
    # walk distances ascending = negated distances descending; threshold = first crossing
    cur = math.inf
    cumulative = 0.0
    threshold = -math.inf  # none crossing: keep every token (index clamped to V - 1)
    while threshold == -math.inf:
        cur = _next_below(dist, b, cur)
        if cur == -math.inf:
            break
        for v in range(z.shape[1]):
            if dist[b, v] == cur:
                cumulative += p[b, v]
                if not cumulative < mass and threshold == -math.inf:
                    threshold = cur
    for v in range(z.shape[1]):
        if dist[b, v] < threshold:
            z[b, v] = -math.inf


@cuda.jit
def _sample_rows(z, prompt, output, temperature, top_k, top_p, min_p, typical_p, rep, presence,
                 frequency, uniforms, gumbel, steps, counts, scratch, cand, probs, ids):
    b = cuda.grid(1)
    if b >= z.shape[0]:
        return
    vocab = z.shape[1]
    for s in range(steps.shape[0]):
        step = steps[s]
        if step == 0:
            for i in range(prompt.shape[1]):
                if prompt[b, i] >= 0:
                    counts[b, prompt[b, i]] = -1  # seen, not (yet) counted in the output
            for i in range(output.shape[1]):
                if output[b, i] >= 0:
                    counts[b, output[b, i]] = max(counts[b, output[b, i]], 0) + 1
            best = 0
            for v in range(vocab):
                c = counts[b, v]  # -1: seen in the prompt only; > 0: output count
                if c != 0:
                    z[b, v] = z[b, v] / rep[b] if z[b, v] > 0 else z[b, v] * rep[b]
                if c > 0:
                    z[b, v] -= frequency[b] * c + presence[b]
                if z[b, v] > z[b, best]:
                    best = v
            ids[b, 2] = best
        elif step == 1:
            for v in range(vocab):
                z[b, v] /= temperature[b]
        elif step == 2:
            _top_k(z, b, top_k[b])
        elif step == 3:
            _top_p(z, probs, cand, b, top_p[b])
        elif step == 4:
            _min_p(z, probs, b, min_p[b])
        else:
            _typical(z, probs, scratch, b, typical_p[b])
    _softmax(z, probs, b)
    cumulative = 0.0
    chosen = -1
    last_nonzero = 0
    best = -math.inf
    best_id = 0
    for v in range(vocab):
        q = probs[b, v]
        cumulative += q
        if q > 0:
            last_nonzero = v
        if chosen < 0 and cumulative > uniforms[b]:
            chosen = v
        if z[b, v] > -math.inf and z[b, v] + gumbel[b, v] > best:
            best = z[b, v] + gumbel[b, v]
            best_id = v
    ids[b, 0] = chosen if chosen >= 0 else last_nonzero
    ids[b, 1] = best_id


def sample_tokens(logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
                  repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel,
                  order="hf"):
    x, prompt_ids, output_ids, top_k, g, per_row = sample_tokens_args(
        logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
        repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel, order)
    z = widen(x)
    rows = z.shape[0]
    if rows == 0:  # no rows to sample, no blocks to launch
        none = np.zeros(0, np.int64)
        return {"probs": x.copy(), "sampled_ids": none, "gumbel_ids": none.copy(), "greedy_ids": none.copy()}
    dev = {k: cuda.to_device(v.astype(z.dtype)) for k, v in per_row.items()}
    steps = np.array([STEP_CODES[s] for s in ORDERS[order]], dtype=np.int64)
    probs_buf = guarded_host_buffer(z.size, z.dtype)
    ids_buf = guarded_host_buffer(rows * 3, np.int64)
    d_probs, d_ids = cuda.to_device(probs_buf), cuda.to_device(ids_buf)
    d_z = cuda.to_device(z)
    _sample_rows[(rows + THREADS - 1) // THREADS, THREADS](
        d_z, cuda.to_device(np.ascontiguousarray(prompt_ids, np.int64)),
        cuda.to_device(np.ascontiguousarray(output_ids, np.int64)), dev["temperature"],
        cuda.to_device(np.ascontiguousarray(top_k, np.int64)), dev["top_p"], dev["min_p"],
        dev["typical_p"], dev["repetition_penalty"], dev["presence_penalty"],
        dev["frequency_penalty"], dev["uniforms"], cuda.to_device(widen(g.astype(x.dtype))),
        cuda.to_device(steps), cuda.to_device(np.zeros(z.shape, np.int64)),
        cuda.device_array_like(z), cuda.device_array(z.shape, np.int64), interior(d_probs, z.size).reshape(z.shape),
        interior(d_ids, rows * 3).reshape(rows, 3))
    probs_buf, ids_buf = d_probs.copy_to_host(), d_ids.copy_to_host()
    check_guards(probs_buf, z.size, "numba-cuda sample_tokens (probs)")
    check_guards(ids_buf, rows * 3, "numba-cuda sample_tokens (ids)")
    ids = interior(ids_buf, rows * 3).reshape(rows, 3)
    return {"probs": interior(probs_buf, z.size).reshape(z.shape).astype(x.dtype),
            "sampled_ids": ids[:, 0].copy(), "gumbel_ids": ids[:, 1].copy(),
            "greedy_ids": ids[:, 2].copy()}
