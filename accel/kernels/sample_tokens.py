"""The row steps of sample_tokens that numba-cpu and numba-cuda share (reference:
llmref.ref.sample_tokens; see llmref.accel.kernels): the softmax, the penalties with the
greedy argmax, the temperature, the min-p filter, the typical-p distances and the final
draws. Each works on row b of (B, V) work arrays that its caller owns; the caller runs the
steps in the order's sequence, one row per loop iteration (numba-cpu) or per thread
(numba-cuda), and ranks tokens for top-k, top-p and typical-p itself (numba-cpu sorts,
numba-cuda walks the distinct values in rank order: it has no sort).

Tie-break everywhere: among equal values the lower token id comes first.
"""
import math


def softmax_row(z, b, p):
    """p[b] = exp(z[b] - max z[b]) / sum of them; -inf entries get 0."""
    m = -math.inf
    for v in range(z.shape[1]):
        m = max(m, z[b, v])
    s = 0.0
    for v in range(z.shape[1]):
        p[b, v] = math.exp(z[b, v] - m)
        s += p[b, v]
    for v in range(z.shape[1]):
        p[b, v] /= s


def penalise_row(z, prompt, output, rep, presence, frequency, b, counts):
    """z[b] penalised in place, returning its argmax (the lowest id among equal maxima):
    x / r if x > 0 else x * r for every id seen in prompt or output (-1 is padding), then
    x - frequency * c - presence for the c > 0 occurrences of an id in the output. counts[b]
    is work space: -1 for an id seen in the prompt only, else its output count."""
    vocab = z.shape[1]
    for v in range(vocab):
        counts[b, v] = 0
    for i in range(prompt.shape[1]):
        if prompt[b, i] >= 0:
            counts[b, prompt[b, i]] = -1
    for i in range(output.shape[1]):
        if output[b, i] >= 0:
            counts[b, output[b, i]] = max(counts[b, output[b, i]], 0) + 1
    best = 0
    for v in range(vocab):
        c = counts[b, v]
        if c != 0:
            z[b, v] = z[b, v] / rep[b] if z[b, v] > 0 else z[b, v] * rep[b]
        if c > 0:
            z[b, v] -= frequency[b] * c + presence[b]
        if z[b, v] > z[b, best]:
            best = v
    return best


def temperature_row(z, b, temperature):
    """z[b] / T in place."""
    for v in range(z.shape[1]):
        z[b, v] /= temperature


def min_p_row(z, p, b, min_p):
    """Remove (-inf) the tokens with p[b, v] < min_p * max p[b]; p[b] = softmax(z[b])."""
    top = 0.0
    for v in range(z.shape[1]):
        top = max(top, p[b, v])
    for v in range(z.shape[1]):
        if p[b, v] < min_p * top:
            z[b, v] = -math.inf


def typical_distances(z, p, b, distance):
    """distance[b, v] = |-log p_v - H| with H = -sum p log p the entropy, +inf for removed
    tokens; p[b] = softmax(z[b]), log p from the shifted logits (never log of p)."""
    vocab = z.shape[1]
    m = -math.inf
    for v in range(vocab):
        m = max(m, z[b, v])
    s = 0.0
    for v in range(vocab):
        s += math.exp(z[b, v] - m)
    log_s = math.log(s)
    entropy = 0.0
    for v in range(vocab):
        if p[b, v] > 0:
            entropy -= p[b, v] * (z[b, v] - m - log_s)
    for v in range(vocab):
        distance[b, v] = abs(-(z[b, v] - m - log_s) - entropy) if p[b, v] > 0 else math.inf


def sample_row(z, probs, uniforms, gumbel, b, ids):
    """ids[b, 0] = the inverse CDF of probs[b] at uniforms[b] in ascending token ids (if
    rounding leaves the total <= u: the last id with p > 0); ids[b, 1] = argmax over kept
    tokens of z[b, v] + gumbel[b, v]."""
    cumulative = 0.0
    chosen = -1
    last_nonzero = 0
    best = -math.inf
    best_id = 0
    for v in range(z.shape[1]):
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
