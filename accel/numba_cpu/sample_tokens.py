"""Logit processors and deterministic sampling on numba-cpu (reference:
llmref.ref.sample_tokens): each row in turn runs the steps of its order, the shared row
steps of llmref.accel.kernels.sample_tokens and, for top-k, top-p and typical-p, the sorted
rankings below (a stable merge sort keeps equal values in ascending token id, the spec's
tie-break). Checked by the reference's sample_tokens_args; float16/bfloat16 logits are
widened to float32 and probs rounded once.

The step dispatch of _sample_rows mirrors numba-cuda's kernel line for line but calls this
backend's rankings: numba.cuda cannot take a ranking as an argument, and its rankings cannot
sort, so the dispatch is written in each backend.
"""
import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.kernels import sample_tokens as kernels
from llmref.ref.sample_tokens import ORDERS, sample_tokens_args

STEP_CODES = {"penalties": 0, "temperature": 1, "top_k": 2, "top_p": 3, "min_p": 4, "typical_p": 5}

_softmax_row = numba.njit(cache=True)(kernels.softmax_row)
_penalise_row = numba.njit(cache=True)(kernels.penalise_row)
_temperature_row = numba.njit(cache=True)(kernels.temperature_row)
_min_p_row = numba.njit(cache=True)(kernels.min_p_row)
_typical_distances = numba.njit(cache=True)(kernels.typical_distances)
_sample_row = numba.njit(cache=True)(kernels.sample_row)


@numba.njit(cache=True)
def _kth_largest(row, k):
    """The k-th largest value of row (1 <= k <= n, no NaN), by quickselect on a copy:
    candidates[lo:hi] holds the values still in play, whose k-th largest is the answer; each
    round splits them three ways around the median of three of them, greater | equal | less,
    and keeps the part that holds the k-th (ties end it at once: no quadratic run on them).
    Written out rather than np.partition, whose generic implementation took 6 s to compile
    per dtype; as fast on a 128k row."""
    candidates = row.copy()
    lo, hi = 0, candidates.shape[0]
    while True:
        a, b, c = candidates[lo], candidates[(lo + hi) // 2], candidates[hi - 1]
        pivot = max(min(a, b), min(max(a, b), c))  # the median of a, b, c
        greater, i, less = lo, lo, hi
        while i < less:  # [lo, greater) > pivot, [greater, i) == pivot, [less, hi) < pivot
            x = candidates[i]
            if x > pivot:
                candidates[i], candidates[greater] = candidates[greater], x
                greater += 1
                i += 1
            elif x < pivot:
                less -= 1
                candidates[i], candidates[less] = candidates[less], x
            else:
                i += 1
        if k <= greater - lo:
            hi = greater
        elif k <= less - lo:
            return pivot
        else:
            k -= less - lo
            lo = less


@numba.njit(cache=True)
def _top_k(z, b, k):
    """Keep z[b, v] >= the k-th largest value (every tie at it survives)."""
    kth = _kth_largest(z[b], k)
    for v in range(z.shape[1]):
        if z[b, v] < kth:
            z[b, v] = -np.inf


@numba.njit(cache=True)
def _top_p(z, p, b, top_p):
    """Keep a token iff the mass before it in descending order is < top_p; p[b] = softmax(z[b]).
    Only the tokens with p >= t are sorted, t quartered from max p until their mass reaches
    top_p: they form a prefix of the descending order that holds the crossing token."""
    row = p[b]
    t = row.max()
    while True:
        mass = 0.0
        for v in range(row.shape[0]):
            if row[v] >= t:
                mass += row[v]
        if mass >= top_p + 1e-6 or t == 0.0:  # a margin over summation-order rounding
            break
        t = t * 0.25 if t > 1e-30 else 0.0
    candidates = np.flatnonzero(row >= t)  # ascending token id
    order = candidates[np.argsort(-row[candidates], kind="mergesort")]
    keep = np.zeros(row.shape[0], dtype=np.bool_)
    mass_before = 0.0
    for i in range(order.shape[0]):
        v = order[i]
        keep[v] = mass_before < top_p and row[v] > 0
        mass_before += row[v]
    for v in range(row.shape[0]):
        if not keep[v]:
            z[b, v] = -np.inf


@numba.njit(cache=True)
def _typical(z, p, distance, b, mass):
    """Keep the tokens whose distance is at most that of the first token, in ascending
    distance, at which the cumulative mass reaches `mass` (the last token if none)."""
    order = np.argsort(distance[b], kind="mergesort")
    cumulative = 0.0
    last = 0
    for i in range(order.shape[0]):
        cumulative += p[b, order[i]]
        if cumulative < mass:
            last += 1
    threshold = distance[b, order[min(last, z.shape[1] - 1)]]
    for v in range(z.shape[1]):
        if distance[b, v] > threshold:
            z[b, v] = -np.inf


@numba.njit(cache=True)
def _sample_rows(z, prompt, output, temperature, top_k, top_p, min_p, typical_p, rep, presence,
                 frequency, uniforms, gumbel, steps, counts, distance, probs, ids):
    """Row b: the steps in order on z[b] (probs[b] is the softmax the filters read), then
    probs[b] = softmax(z[b]) and ids[b] = (inverse CDF, Gumbel-max, greedy)."""
    for b in range(z.shape[0]):
        # The filter order is the spec's; this loop is written per backend because the
        # numba-cuda top-p takes a candidate scratch row that the CPU one does not need.
        for step in steps:
            if step == 0:
                ids[b, 2] = _penalise_row(z, prompt, output, rep, presence, frequency, b, counts)
            elif step == 1:
                _temperature_row(z, b, temperature[b])
            elif step == 2 and top_k[b] > 0:
                _top_k(z, b, top_k[b])
            elif step == 3 and top_p[b] < 1:
                _softmax_row(z, b, probs)
                _top_p(z, probs, b, top_p[b])
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
    z = np.array(x, dtype=compute_dtype(x.dtype))  # (B, V), a copy processed in place
    row = {k: v.astype(z.dtype) for k, v in per_row.items()}
    probs, ids = np.empty_like(z), np.empty((z.shape[0], 3), np.int64)
    _sample_rows(z, np.ascontiguousarray(prompt_ids, np.int64), np.ascontiguousarray(output_ids, np.int64),
                 row["temperature"], np.ascontiguousarray(top_k, np.int64), row["top_p"], row["min_p"],
                 row["typical_p"], row["repetition_penalty"], row["presence_penalty"],
                 row["frequency_penalty"], row["uniforms"], widen(g.astype(x.dtype)),
                 np.array([STEP_CODES[s] for s in ORDERS[order]], dtype=np.int64),
                 np.empty(z.shape, np.int64), np.empty_like(z), probs, ids)
    return {"probs": probs.astype(x.dtype, copy=False), "sampled_ids": ids[:, 0].copy(),
            "gumbel_ids": ids[:, 1].copy(), "greedy_ids": ids[:, 2].copy()}
