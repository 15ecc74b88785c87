"""Samplers that draw their own random numbers: the support check and the Chernoff-bounded
binomial fit reject a top-p off by one token and a temperature applied twice, accept numpy's
and torch's multinomial samplers, and their false-alarm rate, measured over 1,000 seeds, stays
below the stated probability."""
import numpy as np
import pytest

from llmref.compare import Outcome
from llmref.fit import audit_sampler, judge_draws
from llmref.spec import load_spec, resolve
from llmref.store import load_case

SPEC = load_spec("sample_tokens")
REF = resolve(SPEC.ref)
PROBS = [t.name for t in SPEC.outputs].index("probs")


def _probs(**kwargs):
    """The spec's distribution for these inputs, from the reference (uniforms/gumbel unused)."""
    rows, vocab = kwargs["logits"].shape
    out = REF(**kwargs, uniforms=np.zeros(rows), gumbel=np.zeros((rows, vocab)))
    return np.asarray(out[PROBS] if isinstance(out, tuple) else out["probs"], np.float64)


def _draw(rng, p, num_samples):
    """num_samples draws per row of p (rows may be zero)."""
    return np.array([rng.choice(p.shape[1], size=num_samples, p=row / row.sum()) for row in p],
                    dtype=np.int64).reshape(p.shape[0], num_samples)


def numpy_sampler(seed):
    rng = np.random.default_rng(seed)

    def sample(num_samples, **kwargs):
        return _draw(rng, _probs(**kwargs), num_samples)

    return sample


def torch_sampler(seed):
    torch = pytest.importorskip("torch", reason="torch is in the crosscheck extra")
    generator = torch.Generator().manual_seed(seed)

    def sample(num_samples, **kwargs):
        p = torch.from_numpy(_probs(**kwargs))
        if p.shape[0] == 0:
            return np.zeros((0, num_samples), np.int64)
        return torch.multinomial(p, num_samples, replacement=True, generator=generator).numpy()

    return sample


def top_p_one_token_short(seed):
    """The top-p boundary off by one: the last token the nucleus keeps is dropped."""
    rng = np.random.default_rng(seed)

    def sample(num_samples, **kwargs):
        p = _probs(**kwargs)
        for row, top_p in zip(p, kwargs["top_p"]):
            kept = np.flatnonzero(row > 0)
            if top_p < 1 and kept.size > 1:
                row[kept[np.argmin(row[kept])]] = 0.0
        return _draw(rng, p, num_samples)

    return sample


def temperature_twice(seed):
    rng = np.random.default_rng(seed)

    def sample(num_samples, **kwargs):
        return _draw(rng, _probs(**{**kwargs, "temperature": kwargs["temperature"] ** 2}), num_samples)

    return sample


@pytest.fixture(scope="module")
def spec():
    if SPEC.fit is None:
        pytest.fail("specs/sample_tokens.yaml must declare fit: (distribution, drop, samples)")
    return SPEC


def test_correct_samplers_pass(spec):
    for make in (numpy_sampler, torch_sampler):
        results = audit_sampler(spec, make(0), draws=20_000)
        assert results and all(r.outcome is Outcome.PASSED for r in results), \
            [(r.case, r.detail) for r in results if r.outcome is not Outcome.PASSED]


@pytest.mark.parametrize("wrong,case", [(top_p_one_token_short, "top_p_crossing_token"),
                                        (temperature_twice, "hf_mixed_rows")])
def test_wrong_samplers_fail(spec, wrong, case):
    results = {r.case: r for r in audit_sampler(spec, wrong(0), draws=20_000)}
    assert results[case].outcome is Outcome.NUMERICAL_MISMATCH, results[case].detail


def test_a_token_outside_the_support_fails_at_once():
    probs = np.array([[0.5, 0.5, 0.0]])
    draws = np.array([[0, 1, 1, 0, 2]])
    passed, detail, _ = judge_draws(draws, probs)
    assert not passed and "outside the support" in detail


def test_false_alarm_rate_over_a_thousand_seeds(spec):
    """A correct sampler fails a case with probability at most alpha. Measured at alpha 1e-6
    (the default: no false alarm expected) and at alpha 0.05, where the observed rate must
    not exceed 0.05 (the Chernoff bound makes the test conservative)."""
    case = spec.case("hf_mixed_rows")
    at = load_case(spec, case, "float64")
    probs = np.asarray(at.expected["probs"])
    rng = np.random.default_rng(12345)
    alarms = {1e-6: 0, 0.05: 0}
    seeds = 1000
    for _ in range(seeds):
        draws = _draw(rng, probs, 4000)
        for alpha in alarms:
            alarms[alpha] += not judge_draws(draws, probs, alpha)[0]
    assert alarms[1e-6] == 0
    assert alarms[0.05] / seeds <= 0.05
    print(f"false alarms over {seeds} seeds: {alarms}")
