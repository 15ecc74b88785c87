"""Logit processors and deterministic sampling on numba-cuda (reference:
llmref.ref.sample_tokens): one thread per row runs the steps of its order on its row of the
work arrays (processed logits z, probabilities, distances), the shared row steps of
llmref.accel.kernels.sample_tokens and, for top-k, top-p and typical-p, the rankings below.
Checked by the reference's sample_tokens_args; float16/bfloat16 logits are widened to
float32 on the host and probs rounded once.

The rankings do not sort (numba.cuda has no sort): they walk the row's distinct values in
rank order, one pass per distinct value (the largest value below the current one), equal
values in ascending token id, the spec's tie-break. Top-p first narrows the walk to a
candidate prefix (tokens above a quartering threshold), so it costs O(V log(1/t) + n^2) for
n candidates per row; top-k costs O(V k) and typical-p O(V * levels). The step dispatch of
_sample_rows mirrors numba-cpu's line for line but calls these rankings (numba.cuda cannot
take a ranking as an argument).
"""
import math

import numpy as np
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import sample_tokens as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.sample_tokens import ORDERS, sample_tokens_args

STEP_CODES = {"penalties": 0, "temperature": 1, "top_k": 2, "top_p": 3, "min_p": 4, "typical_p": 5}

_softmax_row = cuda.jit(device=True)(kernels.softmax_row)
_penalise_row = cuda.jit(device=True)(kernels.penalise_row)
_temperature_row = cuda.jit(device=True)(kernels.temperature_row)
_min_p_row = cuda.jit(device=True)(kernels.min_p_row)
_typical_distances = cuda.jit(device=True)(kernels.typical_distances)
_sample_row = cuda.jit(device=True)(kernels.sample_row)


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
    """Keep z[b, v] >= the k-th largest value (every tie at it survives)."""
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
    """Keep a token iff the mass before it in descending order is < top_p; p[b] = softmax(z[b]).
    Candidates first: quarter t from max p until mass(p >= t) reaches top_p (plus a margin for
    summation order); those tokens are a prefix of the descending order holding the crossing
    token, everything else is removed. Then walk the candidates' distinct values."""
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
def _typical(z, p, distance, b, mass):
    """Keep the tokens whose distance is at most that of the first token, in ascending
    distance, at which the cumulative mass reaches `mass` (every token if none): the walk
    goes down the negated distances."""
    for v in range(z.shape[1]):
        distance[b, v] = -distance[b, v]
    cur = math.inf
    cumulative = 0.0
    threshold = -math.inf  # none crossing: keep every token
    while threshold == -math.inf:
        cur = _next_below(distance, b, cur)
        if cur == -math.inf:
            break
        for v in range(z.shape[1]):
            if distance[b, v] == cur:
                cumulative += p[b, v]
                if not cumulative < mass and threshold == -math.inf:
                    threshold = cur
    for v in range(z.shape[1]):
        if distance[b, v] < threshold:
            z[b, v] = -math.inf


@cuda.jit
def _sample_rows(z, prompt, output, temperature, top_k, top_p, min_p, typical_p, rep, presence,
                 frequency, uniforms, gumbel, steps, counts, distance, cand, probs, ids):
    """Row b per thread: the steps in order on z[b] (probs[b] is the softmax the filters
    read), then probs[b] = softmax(z[b]) and ids[b] = (inverse CDF, Gumbel-max, greedy)."""
    for b in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
        # The filter order is the spec's; this loop is written per backend because the
        # numba-cuda top-p takes a candidate scratch row that the CPU one does not need.
        for s in range(steps.shape[0]):
            step = steps[s]
            if step == 0:
                ids[b, 2] = _penalise_row(z, prompt, output, rep, presence, frequency, b, counts)
            elif step == 1:
                _temperature_row(z, b, temperature[b])
            elif step == 2 and top_k[b] > 0:
                _top_k(z, b, top_k[b])
            elif step == 3 and top_p[b] < 1:
                _softmax_row(z, b, probs)
                _top_p(z, probs, cand, b, top_p[b])
            elif step == 4 and min_p[b] > 0:
                _softmax_row(z, b, probs)
                _min_p_row(z, probs, b, min_p[b])
            elif step == 5 and typical_p[b] < 1:
                _softmax_row(z, b, probs)
                _typical_distances(z, probs, b, distance)
                _typical(z, probs, distance, b, typical_p[b])
        _softmax_row(z, b, probs)
        _sample_row(z, probs, uniforms, gumbel, b, ids)


def sample_tokens(logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
                  repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel,
                  order="hf"):
    # The spec's signature and its one checker, as in every backend (the kernels differ below).
    x, prompt_ids, output_ids, top_k, g, per_row = sample_tokens_args(
        logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
        repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel, order)
    if x.shape[0] == 0:  # no rows to sample, no device arrays to allocate
        none = np.zeros(0, np.int64)
        return {"probs": x.copy(), "sampled_ids": none, "gumbel_ids": none.copy(), "greedy_ids": none.copy()}
    z = widen(x)  # (B, V); the device copy is processed in place
    row = {k: cuda.to_device(v.astype(z.dtype)) for k, v in per_row.items()}
    probs = Guarded(z.shape, z.dtype, "numba-cuda sample_tokens (probs)")
    ids = Guarded((z.shape[0], 3), np.int64, "numba-cuda sample_tokens (ids)")
    _sample_rows[grid(z.shape[0]), THREADS](
        cuda.to_device(z), cuda.to_device(np.ascontiguousarray(prompt_ids, np.int64)),
        cuda.to_device(np.ascontiguousarray(output_ids, np.int64)), row["temperature"],
        cuda.to_device(np.ascontiguousarray(top_k, np.int64)), row["top_p"], row["min_p"],
        row["typical_p"], row["repetition_penalty"], row["presence_penalty"],
        row["frequency_penalty"], row["uniforms"], cuda.to_device(widen(g.astype(x.dtype))),
        cuda.to_device(np.array([STEP_CODES[s] for s in ORDERS[order]], dtype=np.int64)),
        cuda.device_array(z.shape, np.int64), cuda.device_array_like(z),
        cuda.device_array(z.shape, np.int64), probs.device, ids.device)
    out = ids.result()
    return {"probs": probs.result().astype(x.dtype), "sampled_ids": out[:, 0].copy(),
            "gumbel_ids": out[:, 1].copy(), "greedy_ids": out[:, 2].copy()}
