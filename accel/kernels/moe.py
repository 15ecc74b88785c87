"""MoE routing, capacity, the balance-loss terms and the combine (reference: llmref.ref.moe),
shared by numba-cpu and numba-cuda (see llmref.accel.kernels).

Tokens (route_tokens), experts (capacity_and_balance) and output elements (combine_rows) are
visited as first, first + step, ...: numba-cpu walks them all (0, 1), a numba-cuda thread
the ones of its grid-stride (thread index, grid size). Ranking rule everywhere: larger score
first, equal scores by lower index first.
"""
import math


def route_tokens(logits, bias, method, top_k, n_group, topk_group, scale, first, step, scores,
                 choice, group_score, idx, weights, probs, lse_sq):
    """Token t of logits (T, E): idx[t], weights[t] (K,), probs[t] (E,) (the balance loss's
    distribution) and lse_sq[t] = logsumexp(logits[t])^2 (the z-loss term). method 0 mixtral
    (softmax, top-k, renormalised), 1 deepseek_v2 (softmax, groups by max, top-k, times scale),
    2 deepseek_v3 (sigmoid, bias for selection only, groups by top-2 sum, top-k, renormalised
    times scale). scores, choice (T, E) and group_score (T, G) are work space."""
    experts = logits.shape[1]
    size = experts // n_group
    for t in range(first, logits.shape[0], step):
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
                best = -math.inf
                second = -math.inf
                for e in range(g * size, (g + 1) * size):
                    c = choice[t, e]
                    if c > best:
                        second = best
                        best = c
                    elif c > second:
                        second = c
                group_score[t, g] = best + second if method == 2 else best
            for _ in range(n_group - topk_group):  # drop the worst group: lowest score, highest index
                worst = 0
                for g in range(1, n_group):
                    if group_score[t, g] <= group_score[t, worst]:
                        worst = g
                group_score[t, worst] = math.inf
                for e in range(worst * size, (worst + 1) * size):
                    choice[t, e] = -math.inf
        chosen = 0.0
        for j in range(top_k):  # K rounds of the largest remaining choice, lowest index on ties
            best_e = 0
            for e in range(1, experts):
                if choice[t, e] > choice[t, best_e]:
                    best_e = e
            idx[t, j] = best_e
            weights[t, j] = scores[t, best_e]
            chosen += scores[t, best_e]
            choice[t, best_e] = -math.inf
        for j in range(top_k):
            if method == 0:
                weights[t, j] = weights[t, j] / chosen
            elif method == 1:
                weights[t, j] = weights[t, j] * scale
            else:
                weights[t, j] = weights[t, j] / chosen * scale


def capacity_and_balance(idx, probs, capacity, first, step, kept, balance):
    """Expert e: kept[t, j] of its assignments, slot-major (every first choice before any
    second, then token order), while fewer than `capacity` are ahead (capacity < 0: no limit),
    and balance[e] = f_e * P_e, f_e = assignments / (T K), P_e = mean_t probs[t, e]."""
    tokens, k = idx.shape
    for e in range(first, probs.shape[1], step):
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


def combine_rows(expert_out, position, weights, shared_out, use_shared, first, step, y):
    """y[t, d] = sum over the kept slots j of token t, in slot order, of weights[t, j] *
    expert_out[position[t, j], d] (position -1: dropped), plus shared_out[t, d] if use_shared."""
    dim = y.shape[1]
    for i in range(first, y.shape[0] * dim, step):
        t, d = i // dim, i % dim
        s = 0.0
        for j in range(position.shape[1]):
            if position[t, j] >= 0:
                s += weights[t, j] * expert_out[position[t, j], d]
        if use_shared:
            s += shared_out[t, d]
        y[t, d] = s
