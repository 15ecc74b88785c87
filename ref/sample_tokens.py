"""Logit processors, their pipeline order, and deterministic sampling (specs/sample_tokens.yaml).

Every processor maps one row of logits x (V,) to a row of the same shape in which removed
tokens are -inf; probabilities inside a processor are softmax(x) over the row, so tokens an
earlier step removed have probability 0. Per-row parameters: each row has its own temperature,
top-k, top-p, min-p, typical-p and penalties.

Tie-break everywhere: among equal values the lower token id ranks first.
"""
import numpy as np

from llmref.dtypes import UNIT_ROUNDOFF
from llmref.errors import InputError
from llmref.validate import float_array, int_array

ORDERS = {
    # transformers generate(): processors (penalties) first, then the warpers in this order.
    "hf": ("penalties", "temperature", "top_k", "top_p", "min_p", "typical_p"),
    # vLLM v1 sampler: penalties, temperature, min-p, then top-k and top-p in one function.
    "vllm": ("penalties", "temperature", "min_p", "top_k", "top_p"),
    # llama.cpp default sampler chain: temperature last.
    "llama_cpp": ("penalties", "top_k", "typical_p", "top_p", "min_p", "temperature"),
}


def softmax_row(x):
    """exp(x - max x) / sum exp(x - max x); -inf entries get 0."""
    e = np.exp(x - x.max())
    return e / e.sum()


def descending_order(values):
    """Token ids sorted by value, largest first; equal values by ascending token id."""
    ids = np.arange(values.shape[0])
    return np.lexsort((ids, -values))


def apply_penalties(x, prompt_ids, output_ids, repetition_penalty, presence_penalty,
                    frequency_penalty):
    """Repetition penalty (CTRL, HF/vLLM rule) over the unique ids of prompt and output:
        x_v <- x_v / r  if x_v > 0,   x_v * r  otherwise;
    then OpenAI presence/frequency over the output only, with c_v = count of v in the output:
        x_v <- x_v - frequency * c_v - presence * [c_v > 0].
    Id -1 is padding and never counts.
    """
    x = x.copy()
    dtype = x.dtype.type
    seen = np.unique(np.concatenate([prompt_ids, output_ids]))
    seen = seen[seen >= 0]
    r = dtype(repetition_penalty)
    x[seen] = np.where(x[seen] > 0, x[seen] / r, x[seen] * r)
    counts = np.bincount(output_ids[output_ids >= 0], minlength=x.shape[0]).astype(x.dtype)
    return x - dtype(frequency_penalty) * counts - dtype(presence_penalty) * (counts > 0)


def apply_temperature(x, temperature):
    """x / T."""
    return x / x.dtype.type(temperature)


def top_k_filter(x, k):
    """Keep x_v >= the k-th largest value (all ties at the k-th value survive); k = 0 is off."""
    if k == 0:
        return x
    kth = np.sort(x)[x.shape[0] - k]
    return np.where(x >= kth, x, -np.inf)


def top_p_filter(x, top_p):
    """Nucleus: in descending probability order, keep a token iff the mass strictly before it is
    < top_p, so the token that crosses top_p is kept (Holtzman et al. eq. 2); top_p = 1 is off."""
    if top_p >= 1:
        return x
    p = softmax_row(x)
    order = descending_order(p)
    mass_before = np.cumsum(p[order]) - p[order]  # exclusive prefix sums
    keep = np.zeros(x.shape[0], dtype=bool)
    keep[order] = mass_before < top_p
    return np.where(keep & (p > 0), x, -np.inf)


def min_p_filter(x, min_p):
    """Keep p_v >= min_p * max_u p_u; min_p = 0 is off."""
    if min_p == 0:
        return x
    p = softmax_row(x)
    return np.where(p >= p.dtype.type(min_p) * p.max(), x, -np.inf)


def typical_p_filter(x, mass):
    """Locally typical sampling (Meister et al.), as transformers' TypicalLogitsWarper:
    H = -sum p log p;  d_v = |-log p_v - H|;  sort d ascending (ties by token id);
    i* = min(#{prefix mass < mass}, V - 1);  keep d_v <= d_(i*).   mass = 1 is off."""
    if mass >= 1:
        return x
    shifted = x - x.max()
    log_p = shifted - np.log(np.exp(shifted).sum())
    p = np.exp(log_p)
    entropy = -np.sum(np.where(p > 0, p * np.where(p > 0, log_p, 0), 0))
    distance = np.abs(-log_p - entropy)  # inf for removed tokens
    order = np.lexsort((np.arange(x.shape[0]), distance))
    cumulative = np.cumsum(p[order])
    last = min(int((cumulative < mass).sum()), x.shape[0] - 1)
    return np.where(distance <= distance[order[last]], x, -np.inf)


def step_functions(prompt_ids, output_ids, params):
    """{step name: row -> row} for one row's ids and parameters."""
    return {
        "penalties": lambda v: apply_penalties(v, prompt_ids, output_ids, params["repetition_penalty"],
                                               params["presence_penalty"], params["frequency_penalty"]),
        "temperature": lambda v: apply_temperature(v, params["temperature"]),
        "top_k": lambda v: top_k_filter(v, params["top_k"]),
        "top_p": lambda v: top_p_filter(v, params["top_p"]),
        "min_p": lambda v: min_p_filter(v, params["min_p"]),
        "typical_p": lambda v: typical_p_filter(v, params["typical_p"]),
    }


def process_row(x, prompt_ids, output_ids, params, order):
    """Run the steps of ORDERS[order] on one row; returns the processed logits."""
    steps = step_functions(prompt_ids, output_ids, params)
    for step in ORDERS[order]:
        x = steps[step](x)
    return x


def inverse_cdf_sample(p, u):
    """Smallest token id j with sum_{v <= j} p_v > u (ascending token-id order); if rounding
    leaves the total <= u, the largest id with p_j > 0."""
    above = np.flatnonzero(np.cumsum(p) > u)
    return int(above[0]) if above.size else int(np.flatnonzero(p > 0)[-1])


def gumbel_max_sample(x, g):
    """argmax over kept tokens of (x_v + g_v), x the processed logits (= log p_v + const);
    equal scores: lowest token id."""
    score = np.where(x > -np.inf, x + g, -np.inf)
    return int(np.argmax(score))


def row_params(row, temperature, top_k, top_p, min_p, typical_p, repetition_penalty,
               presence_penalty, frequency_penalty):
    return {"temperature": float(temperature[row]), "top_k": int(top_k[row]),
            "top_p": float(top_p[row]), "min_p": float(min_p[row]),
            "typical_p": float(typical_p[row]), "repetition_penalty": float(repetition_penalty[row]),
            "presence_penalty": float(presence_penalty[row]),
            "frequency_penalty": float(frequency_penalty[row])}


def _per_row(name, values, rows, interval=None):
    """A (rows,) float64 vector of finite values inside `interval`, written as in mathematics:
    "(0, 1]" means 0 < v <= 1."""
    arr = float_array(name, values, ndim=1).astype(np.float64)
    if arr.shape[0] != rows:
        raise InputError(f"{name}: has {arr.shape[0]} entries but logits has {rows} rows")
    if interval is not None:
        low, high = (float(v) for v in interval[1:-1].split(","))
        ok = ((arr >= low) if interval[0] == "[" else (arr > low)) & \
             ((arr <= high) if interval[-1] == "]" else (arr < high))
        if not ok.all():
            raise InputError(f"{name}: {float(arr[~ok][0])} is outside {interval}")
    return arr


def sample_tokens_args(logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p,
                       typical_p, repetition_penalty, presence_penalty, frequency_penalty,
                       uniforms, gumbel, order):
    """Validated (logits, prompt_ids, output_ids, top_k, gumbel, {per-row float64 vectors}) of
    sample_tokens; every backend checks through this before any work. B = 0 rows is allowed
    (empty outputs); a row needs at least one token that is not -inf."""
    x = float_array("logits", logits, ndim=2, allow_neg_inf=True)
    rows, vocab = x.shape
    if rows and vocab == 0:
        raise InputError("logits: has no tokens (V = 0), so no token can be sampled")
    if (x == -np.inf).all(axis=1).any():
        raise InputError("logits: a row is entirely -inf (no token can be sampled)")
    prompt_ids = int_array("prompt_ids", prompt_ids, ndim=2, low=-1, high=vocab)
    output_ids = int_array("output_ids", output_ids, ndim=2, low=-1, high=vocab)
    for name, ids in (("prompt_ids", prompt_ids), ("output_ids", output_ids)):
        if ids.shape[0] != rows:
            raise InputError(f"{name}: has {ids.shape[0]} rows but logits has {rows}")
    top_k = int_array("top_k", top_k, ndim=1, low=0, high=vocab + 1)
    if top_k.shape[0] != rows:
        raise InputError(f"top_k: has {top_k.shape[0]} entries but logits has {rows} rows")
    out = {
        "temperature": _per_row("temperature", temperature, rows, "(0, inf)"),
        "top_p": _per_row("top_p", top_p, rows, "(0, 1]"),
        "min_p": _per_row("min_p", min_p, rows, "[0, 1]"),
        "typical_p": _per_row("typical_p", typical_p, rows, "(0, 1]"),
        "repetition_penalty": _per_row("repetition_penalty", repetition_penalty, rows, "(0, inf)"),
        "presence_penalty": _per_row("presence_penalty", presence_penalty, rows),
        "frequency_penalty": _per_row("frequency_penalty", frequency_penalty, rows),
        "uniforms": _per_row("uniforms", uniforms, rows, "[0, 1)"),
    }
    g = float_array("gumbel", gumbel, ndim=2)
    if g.shape != x.shape:
        raise InputError(f"gumbel: shape {g.shape} must equal the logits' shape {x.shape}")
    if order not in ORDERS:
        raise InputError(f"order: must be one of {tuple(ORDERS)}, got {order!r}")
    if "typical_p" not in ORDERS[order] and (out["typical_p"] < 1).any():
        raise InputError(f"typical_p: the {order!r} order has no typical-p step; pass 1")
    return x, prompt_ids, output_ids, top_k, g, out


def sample_tokens(logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
                  repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel,
                  order="hf"):
    """Per row b: z = the steps of ORDERS[order] applied to logits[b];
        probs[b]       = softmax(z)                                  (the filtered distribution)
        sampled_ids[b] = inverse CDF of probs[b] at uniforms[b]      (ascending token ids)
        gumbel_ids[b]  = argmax_v (z_v + gumbel[b, v]) over kept v
        greedy_ids[b]  = argmax_v of the penalised logits (no warpers), lowest id on ties
    """
    x, prompt_ids, output_ids, top_k, g, per_row = sample_tokens_args(
        logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
        repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel, order)
    rows = x.shape[0]
    probs = np.empty_like(x)
    sampled = np.empty(rows, dtype=np.int64)
    by_gumbel = np.empty(rows, dtype=np.int64)
    greedy = np.empty(rows, dtype=np.int64)
    for b in range(rows):
        params = row_params(b, top_k=top_k, **{k: v for k, v in per_row.items() if k != "uniforms"})
        penalised = apply_penalties(x[b], prompt_ids[b], output_ids[b], params["repetition_penalty"],
                                    params["presence_penalty"], params["frequency_penalty"])
        greedy[b] = int(np.argmax(penalised))
        z = process_row(x[b], prompt_ids[b], output_ids[b], params, order)
        probs[b] = softmax_row(z)
        sampled[b] = inverse_cdf_sample(probs[b], x.dtype.type(per_row["uniforms"][b]))
        by_gumbel[b] = gumbel_max_sample(z, g[b].astype(x.dtype))
    return {"probs": probs, "sampled_ids": sampled, "gumbel_ids": by_gumbel, "greedy_ids": greedy}


# ---------------------------------------------------------------------------------------------
# Float32 decision boundaries: the spec's `ties:` function


def sample_tokens_ties(dtype, logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p,
                       typical_p, repetition_penalty, presence_penalty, frequency_penalty,
                       uniforms, gumbel, order="hf"):
    """{output: (near_tie mask, alternative)}: where a correct implementation computing in
    `dtype` may take the other side of a decision the float64 reference takes, and the
    outputs it then gives.

    Error model (u = unit roundoff of dtype; the inputs are exact at dtype, the per-row
    parameters are rounded to it once). Each processed logit z_v carries an absolute error
    e_v: the penalties round r, the product or quotient by r, f, f * c_v, p and two
    subtractions, so e_v <= 2u (|x'_v| + |f| c_v + |p| [c_v > 0] + |z_v|) with x' = x / r or
    x * r; the temperature rounds T and the quotient, e_v <- e_v / T + 2u |z_v|; a filter only
    removes tokens. A probability p_v = exp(z_v - m) / S has relative error
    u (|z_v - m| + 4) + e_v + e_m (subtraction, exp within 2 ulps, division); S, common to
    the row, moves every p_v alike. A mass (a prefix sum of probabilities, or the CDF) adds
    the summation errors of S and of the prefix, 2 sqrt(V) u relative (the tolerance model's
    sqrt(n) growth of n-term sums, doubled). The decisions:
      greedy_ids   the two largest penalised logits, gap <= e_a + e_b;
      gumbel_ids   the two largest z_v + g_v, whose errors add u (|g_v| + |z_v + g_v|);
      sampled_ids  the CDF sum_{w <= j} p_w against the uniform (rounded to dtype, u u);
      top_k        the k-th largest value against the (k+1)-th;
      top_p        the mass before the last kept and before the first dropped token against
                   top_p (+ u top_p), and the order of those two tokens;
      min_p        exp(z_v - m) against min_p, relative error u (|z_v - m| + 5) + e_v + e_m.
    Exact float64 ties (gap 0) are not near-ties: equal values computed alike stay equal in
    any precision, and the lower token id wins there too. A filter near-tie flips that
    token's kept/removed decision and the rest of the pipeline is replayed (every such
    decision of the row flipped together; the cases hold at most one per row), giving the
    alternative probs, sampled_ids and gumbel_ids of the row; otherwise sampled_ids and
    gumbel_ids take their neighbouring token. Typical-p decisions are not modelled: every
    case keeps them more than 100 times their error bound (tests/test_sample_tokens.py checks).
    """
    u = UNIT_ROUNDOFF[dtype]
    x, prompt_ids, output_ids, top_k, g, per_row = sample_tokens_args(
        logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
        repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel, order)
    expected = sample_tokens(logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p,
                             typical_p, repetition_penalty, presence_penalty, frequency_penalty,
                             uniforms, gumbel, order)
    alternative = {name: value.copy() for name, value in expected.items()}
    for b in range(x.shape[0]):
        params = row_params(b, top_k=top_k, **{k: v for k, v in per_row.items() if k != "uniforms"})
        steps = step_functions(prompt_ids[b], output_ids[b], params)
        flips, v, err = {}, x[b], np.zeros(x.shape[1])
        for step in ORDERS[order]:
            after = steps[step](v)
            if step == "penalties":
                err = _penalty_error(x[b], after, prompt_ids[b], output_ids[b], params, u)
                alternative["greedy_ids"][b] = _runner_up(after, err, expected["greedy_ids"][b])
            elif step == "temperature":
                err = err / params["temperature"] + 2 * u * np.abs(np.where(np.isfinite(after), after, 0))
            else:
                near = _filter_near_ties(step, v, after, err, params, u)
                if near.size:
                    flips[step] = near
            v = after
        z_alt = _replay(x[b], steps, order, flips) if flips else v
        if flips:
            alternative["probs"][b] = softmax_row(z_alt)
            alternative["sampled_ids"][b] = inverse_cdf_sample(alternative["probs"][b], per_row["uniforms"][b])
            alternative["gumbel_ids"][b] = gumbel_max_sample(z_alt, g[b])
        else:
            alternative["sampled_ids"][b] = _cdf_neighbour(v, err, expected["probs"][b],
                                                           per_row["uniforms"][b], u)
            score = np.where(v > -np.inf, v + g[b], -np.inf)
            score_err = err + u * (np.abs(g[b]) + np.abs(np.where(np.isfinite(score), score, 0)))
            alternative["gumbel_ids"][b] = _runner_up(score, score_err, expected["gumbel_ids"][b])
    return {name: (alternative[name] != expected[name], alternative[name]) for name in expected}


def _penalty_error(x, penalised, prompt_ids, output_ids, params, u):
    """Absolute error bound of the penalised logits computed in precision u (see above)."""
    seen = np.zeros(x.shape[0], dtype=bool)
    ids = np.concatenate([prompt_ids, output_ids])
    seen[ids[ids >= 0]] = True
    r = params["repetition_penalty"]
    scaled = np.where(seen, np.where(x > 0, x / r, x * r), x)
    counts = np.bincount(output_ids[output_ids >= 0], minlength=x.shape[0])
    terms = (np.abs(scaled) + abs(params["frequency_penalty"]) * counts
             + abs(params["presence_penalty"]) * (counts > 0) + np.abs(penalised))
    return 2 * u * np.where(np.isfinite(terms), terms, 0)


def _runner_up(values, err, chosen):
    """The second largest of `values` where it lies within the two errors of the largest
    `chosen` (a near-tie argmax), else `chosen`."""
    rest = np.where(np.arange(values.shape[0]) == chosen, -np.inf, values)
    second = int(np.argmax(rest))
    gap = values[chosen] - rest[second]
    return second if np.isfinite(rest[second]) and 0 < gap <= err[chosen] + err[second] else chosen


def _probability_error(z, err, u):
    """Relative error bound of each p_v = softmax(z)_v apart from the common sum (see above)."""
    kept = z > -np.inf
    m = z[kept].max()
    shift = np.abs(np.where(kept, z - m, 0))
    return u * (shift + 4) + err + err[kept][np.argmax(z[kept])]


def _mass_error(mass, z, err, u):
    """Absolute error bound of a prefix mass of softmax(z): the largest relative error of a
    kept probability plus 2 sqrt(V) u of summation, times the mass."""
    rel = _probability_error(z, err, u)[z > -np.inf].max()
    return mass * (rel + 2 * np.sqrt(z.shape[0]) * u)


def _filter_near_ties(step, before, after, err, params, u):
    """Token ids whose kept/removed decision at this filter step lies within the error bound."""
    kept, entered = after > -np.inf, before > -np.inf
    if step == "top_k":
        removed = entered & ~kept
        if not removed.any():
            return np.zeros(0, dtype=np.int64)
        low = np.flatnonzero(kept)[np.argmin(before[kept])]  # the smallest kept value
        high = int(np.argmax(np.where(removed, before, -np.inf)))  # the largest removed value
        single = (before[kept] == before[low]).sum() == 1
        near = single and 0 < before[low] - before[high] <= err[low] + err[high]
        return np.array([low, high] if near else [], dtype=np.int64)
    if step == "top_p":
        if params["top_p"] >= 1:
            return np.zeros(0, dtype=np.int64)
        p = softmax_row(before)
        order = descending_order(p)
        mass_before = np.cumsum(p[order]) - p[order]
        n = int(kept[order].sum())  # kept tokens form the prefix order[:n]
        rel = _probability_error(before, err, u)
        near = []
        last, first = order[n - 1], order[n] if n < order.size and p[order[n]] > 0 else None
        slack = lambda i: _mass_error(mass_before[i], before, err, u) + u * params["top_p"]
        if params["top_p"] - mass_before[n - 1] <= slack(n - 1):
            near.append(last)
        if first is not None:
            if mass_before[n] - params["top_p"] <= slack(n):
                near.append(first)
            if 0 < p[last] - p[first] <= p[last] * rel[last] + p[first] * rel[first]:
                near += [last, first]
        return np.unique(np.array(near, dtype=np.int64))
    if step == "min_p":
        if params["min_p"] == 0:
            return np.zeros(0, dtype=np.int64)
        m = before[entered].max()
        ratio = np.exp(np.where(entered, before - m, -np.inf))  # p_v / max p
        rel = _probability_error(before, err, u) + u
        near = entered & (ratio != params["min_p"]) & (np.abs(ratio - params["min_p"]) <= params["min_p"] * rel)
        return np.flatnonzero(near)
    return np.zeros(0, dtype=np.int64)  # typical_p: not modelled (see sample_tokens_ties)


def _replay(x, steps, order, flips):
    """The pipeline on row x with the decisions in flips {step: token ids} reversed."""
    for step in ORDERS[order]:
        after = steps[step](x)
        for v in flips.get(step, ()):
            after[v] = x[v] if after[v] == -np.inf else -np.inf
        x = after
    return x


def _cdf_neighbour(z, err, probs, uniform, u):
    """The token the inverse CDF gives when the cumulative mass at the boundary next to the
    uniform rounds to its other side, else the reference's token."""
    kept = np.flatnonzero(probs > 0)
    cdf = np.cumsum(probs)
    chosen = inverse_cdf_sample(probs, uniform)
    at = np.searchsorted(kept, chosen)
    slack = lambda j: _mass_error(cdf[j], z, err, u) + u * uniform
    if at + 1 < kept.size and cdf[chosen] - uniform <= slack(chosen):
        return int(kept[at + 1])  # c_chosen may round to <= u: the next kept token
    if at > 0 and uniform - cdf[kept[at - 1]] < slack(kept[at - 1]):
        return int(kept[at - 1])  # the previous boundary may round to > u
    return chosen
