"""Logit processors and deterministic sampling as numba.njit row kernels, rows in parallel
(reference: llmref.ref.sampling). Sorting uses a stable merge sort, so equal values keep
ascending token-id order, the spec's tie-break."""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.sampling import ORDERS, sample_tokens_args

STEP_CODES = {"penalties": 0, "temperature": 1, "top_k": 2, "top_p": 3, "min_p": 4, "typical_p": 5}


@numba.njit(cache=True)
def _softmax(z, p):
    m = -np.inf
    for v in range(z.shape[0]):
        m = max(m, z[v])
    s = 0.0
    for v in range(z.shape[0]):
        p[v] = math.exp(z[v] - m)
        s += p[v]
    for v in range(z.shape[0]):
        p[v] /= s


@numba.njit(cache=True)
def _penalties(z, prompt, output, r, presence, frequency, counts, seen):
    counts[:] = 0
    seen[:] = False
    for i in range(prompt.shape[0]):
        if prompt[i] >= 0:
            seen[prompt[i]] = True
    for i in range(output.shape[0]):
        if output[i] >= 0:
            seen[output[i]] = True
            counts[output[i]] += 1
    for v in range(z.shape[0]):
        if seen[v]:
            z[v] = z[v] / r if z[v] > 0 else z[v] * r
        z[v] -= frequency * counts[v] + (presence if counts[v] > 0 else 0.0)


@numba.njit(cache=True)
def _top_k(z, k):
    if k == 0:
        return
    kth = np.partition(z, z.shape[0] - k)[z.shape[0] - k]
    for v in range(z.shape[0]):
        if z[v] < kth:
            z[v] = -np.inf


@numba.njit(cache=True)
def _top_p(z, top_p, p):
    """Only the tokens with p >= t are sorted, t halved from max p until their mass reaches
    top_p: they form a prefix of the descending order that contains the crossing token."""
    if top_p >= 1:
        return
    _softmax(z, p)
    t = p.max()
    while True:
        mass = 0.0
        for v in range(p.shape[0]):
            if p[v] >= t:
                mass += p[v]
        if mass >= top_p + 1e-6 or t == 0.0:  # a margin over summation-order rounding
            break
        t = t * 0.25 if t > 1e-30 else 0.0
    candidates = np.flatnonzero(p >= t)  # ascending token id
    order = candidates[np.argsort(-p[candidates], kind="mergesort")]
    keep = np.zeros(p.shape[0], dtype=np.bool_)
    mass_before = 0.0
    for i in range(order.shape[0]):
        v = order[i]
        keep[v] = mass_before < top_p and p[v] > 0
        mass_before += p[v]
    for v in range(z.shape[0]):
        if not keep[v]:
            z[v] = -np.inf


@numba.njit(cache=True)
def _min_p(z, min_p, p):
    if min_p == 0:
        return
    _softmax(z, p)
    threshold = min_p * p.max()
    for v in range(z.shape[0]):
        if p[v] < threshold:
            z[v] = -np.inf


@numba.njit(cache=True)
def _typical(z, mass, p, distance):
    if mass >= 1:
        return
    _softmax(z, p)
    m = z.max()
    s = 0.0
    for v in range(z.shape[0]):
        s += math.exp(z[v] - m)
    log_s = math.log(s)
    entropy = 0.0
    for v in range(z.shape[0]):
        if p[v] > 0:
            entropy -= p[v] * (z[v] - m - log_s)
    for v in range(z.shape[0]):
        distance[v] = abs(-(z[v] - m - log_s) - entropy) if p[v] > 0 else np.inf
    order = np.argsort(distance, kind="mergesort")
    cumulative = 0.0
    last = 0
    for i in range(order.shape[0]):
        cumulative += p[order[i]]
        if cumulative < mass:
            last += 1
    last = min(last, z.shape[0] - 1)
    threshold = distance[order[last]]
    for v in range(z.shape[0]):
        if distance[v] > threshold:
            z[v] = -np.inf


@numba.njit(cache=True)
def _sample_rows(x, prompt, output, temperature, top_k, top_p, min_p, typical_p, rep, presence,
                 frequency, uniforms, gumbel, steps, probs, sampled, by_gumbel, greedy):
    rows, vocab = x.shape
    for b in range(rows):
        z = x[b].copy()
        p = np.empty(vocab, dtype=x.dtype)
        scratch = np.empty(vocab, dtype=x.dtype)
        counts = np.zeros(vocab, dtype=np.int64)
        seen = np.zeros(vocab, dtype=np.bool_)
        for step in steps:
            if step == 0:
                _penalties(z, prompt[b], output[b], rep[b], presence[b], frequency[b], counts, seen)
                greedy[b] = np.argmax(z)
            elif step == 1:
                for v in range(vocab):
                    z[v] /= temperature[b]
            elif step == 2:
                _top_k(z, top_k[b])
            elif step == 3:
                _top_p(z, top_p[b], p)
            elif step == 4:
                _min_p(z, min_p[b], p)
            else:
                _typical(z, typical_p[b], p, scratch)
        _softmax(z, probs[b])
        cumulative = 0.0
        chosen = -1
        last_nonzero = 0
        best = -np.inf
        best_id = 0
        for v in range(vocab):
            q = probs[b, v]
            cumulative += q
            if q > 0:
                last_nonzero = v
            if chosen < 0 and cumulative > uniforms[b]:
                chosen = v
            if z[v] > -np.inf and z[v] + gumbel[b, v] > best:
                best = z[v] + gumbel[b, v]
                best_id = v
        sampled[b] = chosen if chosen >= 0 else last_nonzero
        by_gumbel[b] = best_id


def sample_tokens(logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
                  repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel,
                  order="hf"):
    x, prompt_ids, output_ids, top_k, g, per_row = sample_tokens_args(
        logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
        repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel, order)
    xc = widen(x)
    cast = {k: v.astype(xc.dtype) for k, v in per_row.items()}
    rows = x.shape[0]
    probs = np.empty_like(xc)
    sampled, by_gumbel, greedy = (np.empty(rows, np.int64) for _ in range(3))
    steps = np.array([STEP_CODES[s] for s in ORDERS[order]], dtype=np.int64)
    _sample_rows(xc, np.ascontiguousarray(prompt_ids, np.int64),
                 np.ascontiguousarray(output_ids, np.int64), cast["temperature"],
                 np.ascontiguousarray(top_k, np.int64), cast["top_p"], cast["min_p"],
                 cast["typical_p"], cast["repetition_penalty"], cast["presence_penalty"],
                 cast["frequency_penalty"], cast["uniforms"], widen(g.astype(x.dtype)), steps,
                 probs, sampled, by_gumbel, greedy)
    return {"probs": probs.astype(x.dtype), "sampled_ids": sampled, "gumbel_ids": by_gumbel,
            "greedy_ids": greedy}
