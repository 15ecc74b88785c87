"""Wrong logit-processor variants seen in the wild; each must fail its audit."""
import numpy as np

from llmref.ref import sample_tokens as ref


def _sample(args, steps=None, order_steps=None, penalties=ref.apply_penalties):
    """The reference pipeline with some steps replaced."""
    x, prompt_ids, output_ids, top_k, g, per_row = ref.sample_tokens_args(**args)
    fns = {"temperature": ref.apply_temperature, "top_k": ref.top_k_filter,
           "top_p": ref.top_p_filter, "min_p": ref.min_p_filter,
           "typical_p": ref.typical_p_filter}
    fns.update(steps or {})
    names = order_steps or ref.ORDERS[args["order"]]
    out = {"probs": np.empty_like(x), "sampled_ids": np.empty(x.shape[0], np.int64),
           "gumbel_ids": np.empty(x.shape[0], np.int64), "greedy_ids": np.empty(x.shape[0], np.int64)}
    for b in range(x.shape[0]):
        p = ref.row_params(b, top_k=top_k, **{k: v for k, v in per_row.items() if k != "uniforms"})
        z = penalties(x[b], prompt_ids[b], output_ids[b], p["repetition_penalty"],
                      p["presence_penalty"], p["frequency_penalty"])
        out["greedy_ids"][b] = np.argmax(z)
        for name in names[1:]:
            z = fns[name](z, p[name])
        with np.errstate(invalid="ignore"):  # a variant may remove every token
            out["probs"][b] = ref.softmax_row(z)
        out["sampled_ids"][b] = ref.inverse_cdf_sample(out["probs"][b], per_row["uniforms"][b])
        out["gumbel_ids"][b] = ref.gumbel_max_sample(z, g[b])
    return out


def _top_p_inclusive(x, top_p):
    """Keeps the descending prefix whose inclusive cumulative mass is <= top_p."""
    if top_p >= 1:
        return x
    p = ref.softmax_row(x)
    order = ref.descending_order(p)
    keep = np.zeros(x.shape[0], dtype=bool)
    keep[order] = np.cumsum(p[order]) <= top_p
    keep[order[0]] = True
    return np.where(keep, x, -np.inf)


def _top_k_exactly_k(x, k):
    if k == 0:
        return x
    keep = np.zeros(x.shape[0], dtype=bool)
    keep[ref.descending_order(x)[:k]] = True
    return np.where(keep, x, -np.inf)


def _min_p_absolute(x, min_p):
    if min_p == 0:
        return x
    p = ref.softmax_row(x)
    return np.where(p >= min_p, x, -np.inf)


def _repetition_multiplies(x, prompt_ids, output_ids, r, presence, frequency):
    seen = np.unique(np.concatenate([prompt_ids, output_ids]))
    seen = seen[seen >= 0]
    x = x.copy()
    x[seen] = x[seen] * r
    counts = np.bincount(output_ids[output_ids >= 0], minlength=x.shape[0])
    return x - frequency * counts - presence * (counts > 0)


def sample_top_p_drops_crossing_token(order="hf", **args):
    return _sample(dict(args, order=order), steps={"top_p": _top_p_inclusive})


def sample_top_k_drops_ties(order="hf", **args):
    return _sample(dict(args, order=order), steps={"top_k": _top_k_exactly_k})


def sample_min_p_absolute(order="hf", **args):
    return _sample(dict(args, order=order), steps={"min_p": _min_p_absolute})


def sample_repetition_multiplies_positive(order="hf", **args):
    return _sample(dict(args, order=order), penalties=_repetition_multiplies)


def sample_temperature_after_top_p(order="hf", **args):
    return _sample(dict(args, order=order),
                   order_steps=("penalties", "top_k", "top_p", "temperature", "min_p", "typical_p"))
