"""Audit a sampler that draws its own random numbers: a support check and a goodness-of-fit
test with a stated false-alarm probability.

A spec whose distribution is an output declares
    fit: {distribution: probs, drop: [uniforms, gumbel], samples: num_samples}
The sampler under audit takes the spec's inputs and params without the `drop`ped ones
(the supplied randomness), plus `num_samples=N`, and returns (rows, N) token ids drawn
with its own generator. For each case the expected distribution p (rows, V) is the
golden's `distribution` output, and:

1. support: every drawn id must have p > 0 (a token outside the top-k / top-p / min-p set
   is wrong however rarely it is drawn);
2. fit: for every row and every token j with p_j > 0, the count c_j of N draws is tested
   against Binomial(N, p_j) in both tails. Each tail's p-value is bounded with Chernoff's
   inequality, P(C >= c) <= exp(-N KL(c/N || p)) (and likewise below), which holds for
   every N and p: the test can only be conservative. The m tests of a case share
   `alpha` by Bonferroni (each tail at alpha / (2 m)), so a correct sampler fails a case
   with probability at most `alpha` (1e-6 by default), whatever the distribution.
Tokens the reference gives p = 0 are the support check's; a token with p > 0 that is never
drawn is caught by the lower tail once N p_j is large enough (about ln(2m / alpha)).
"""
import numpy as np

from llmref.audit import CaseResult, select_cases
from llmref.compare import Comparison, Outcome
from llmref.errors import InputError
from llmref.spec import load_spec
from llmref.store import load_case

DEFAULT_ALPHA = 1e-6
DEFAULT_DRAWS = 20_000


def kl_bernoulli(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """KL(q || p) for Bernoulli distributions, elementwise, with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(q > 0, q * np.log(q / p), 0.0)
        b = np.where(q < 1, (1 - q) * np.log((1 - q) / (1 - p)), 0.0)
    return a + b


def tail_bounds(counts: np.ndarray, n: int, p: np.ndarray):
    """Chernoff upper bounds on P(C >= c) and P(C <= c) for C ~ Binomial(n, p)."""
    q = counts / n
    bound = np.exp(-n * kl_bernoulli(q, p))
    upper = np.where(q > p, bound, 1.0)
    lower = np.where(q < p, bound, 1.0)
    return upper, lower


def judge_draws(draws: np.ndarray, probs: np.ndarray, alpha: float = DEFAULT_ALPHA) -> tuple:
    """(passed, detail, metrics) for (rows, N) draws against (rows, V) probabilities."""
    rows, vocab = probs.shape
    n = draws.shape[1]
    if draws.ndim != 2 or draws.shape[0] != rows:
        return False, f"draws have shape {draws.shape}, expected ({rows}, N)", {}
    outside = (draws < 0) | (draws >= vocab)
    draws_in = np.where(outside, 0, draws)
    zero = np.take_along_axis(probs, draws_in, axis=1) <= 0
    bad = outside | zero
    if bad.any():
        r, k = (int(i) for i in np.argwhere(bad)[0])
        return False, (f"{int(bad.sum())} draws outside the support; first: row {r} drew token "
                       f"{int(draws[r, k])}, whose probability is 0"), {"outside_support": int(bad.sum())}
    support = probs > 0
    m = int(support.sum())
    if m == 0:  # no rows: nothing was drawn, nothing can be wrong
        return True, "", {"draws": n, "tests": 0, "alpha": alpha}
    counts = np.stack([np.bincount(draws[r], minlength=vocab) for r in range(rows)])
    upper, lower = tail_bounds(counts.astype(np.float64), n, np.where(support, probs, 0.5))
    pvalue = np.where(support, np.minimum(upper, lower), 1.0)
    threshold = alpha / (2 * m)
    r, j = np.unravel_index(int(np.argmin(pvalue)), pvalue.shape)
    metrics = {"draws": n, "tests": m, "alpha": alpha, "min_p_value_bound": float(pvalue[r, j]),
               "threshold": threshold}
    if pvalue[r, j] < threshold:
        return False, (f"row {r} token {j}: {int(counts[r, j])} of {n} draws, expected "
                       f"{n * probs[r, j]:.1f} (p-value <= {pvalue[r, j]:.2g} < {threshold:.2g})"), metrics
    return True, "", metrics


def audit_sampler(component, fn, *, cases=None, draws=DEFAULT_DRAWS, alpha=DEFAULT_ALPHA,
                  dtype="float64", tier="smoke") -> list:
    """CaseResults of a sampler with its own randomness, per the spec's `fit` declaration."""
    spec = load_spec(component) if isinstance(component, str) else component
    fit = spec.fit
    if not fit:
        raise InputError(f"--fit: {spec.id} declares no fit (it has no distribution to sample)")
    results = []
    for case in select_cases(spec, cases, tier):
        at = load_case(spec, case, dtype)
        if at.error is not None:
            continue
        inputs = {k: v for k, v in at.inputs.items() if k not in fit["drop"]}
        try:
            got = np.asarray(fn(**inputs, **case.params, **{fit["samples"]: draws}))
        except Exception as exc:  # the sampler failed: report, don't crash
            results.append(CaseResult(case.id, Outcome.RUNTIME_ERROR, f"{type(exc).__name__}: {exc}"))
            continue
        if got.dtype.kind not in "iu":
            results.append(CaseResult(case.id, Outcome.DTYPE_MISMATCH, f"draws of dtype {got.dtype}"))
            continue
        passed, detail, metrics = judge_draws(got, np.asarray(at.expected[fit["distribution"]]), alpha)
        outcome = Outcome.PASSED if passed else Outcome.NUMERICAL_MISMATCH
        results.append(CaseResult(case.id, outcome, detail, [Comparison("draws", outcome, detail, metrics)]))
    return results
