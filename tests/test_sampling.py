"""Logit processors and deterministic sampling: cited vectors, statistics, transformers
cross-checks, pipeline orders, bad input."""
import math

import numpy as np
import pytest

from llmref import InputError
from llmref.accel.numba_cpu import sampling as sampling_cpu
from llmref.ref import sampling


def _row_args(logits, **per_row):
    """sample_tokens arguments for a batch with every processor off unless given."""
    b, v = logits.shape
    args = dict(logits=logits, prompt_ids=np.full((b, 1), -1), output_ids=np.full((b, 1), -1),
                temperature=np.ones(b), top_k=np.zeros(b, np.int64), top_p=np.ones(b),
                min_p=np.zeros(b), typical_p=np.ones(b), repetition_penalty=np.ones(b),
                presence_penalty=np.zeros(b), frequency_penalty=np.zeros(b),
                uniforms=np.full(b, 0.5), gumbel=np.zeros((b, v)))
    args.update(per_row)
    return args


# Vectors quoted in the research notes from transformers' definitions.
def test_top_k_keeps_ties():
    kept = sampling.top_k_filter(np.array([1.0, 2.0, 2.0, 3.0]), 2)
    assert np.isfinite(kept).tolist() == [False, True, True, True]


def test_top_p_keeps_the_crossing_token():
    x = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert np.isfinite(sampling.top_p_filter(x, 0.6)).tolist() == [True, True, False, False]


def test_min_p_is_relative_to_the_top_probability():
    x = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert np.isfinite(sampling.min_p_filter(x, 0.11)).tolist() == [True, True, True, False]  # cut 0.055
    # min_p 0.4: the cut is 0.4 * 0.5 = 0.2, so 0.3 survives (relative to 1 it would not)
    assert np.isfinite(sampling.min_p_filter(x, 0.4)).tolist() == [True, True, False, False]


def test_repetition_penalty_divides_positive_multiplies_negative():
    out = sampling.apply_penalties(np.array([2.0, -2.0, 0.0, 1.0]), np.array([0, 1]), np.array([2, -1]),
                                   1.5, 0.0, 0.0)
    np.testing.assert_allclose(out, [2 / 1.5, -3.0, 0.0, 1.0])


def test_presence_and_frequency_use_output_counts_only():
    out = sampling.apply_penalties(np.zeros(4), np.array([3, 3]), np.array([1, 1, 2, -1]), 1.0, 0.5, 0.25)
    np.testing.assert_allclose(out, [0.0, -1.0, -0.75, 0.0])


def test_inverse_cdf_walks_ascending_token_ids():
    p = np.array([0.1, 0.0, 0.6, 0.3])
    assert [sampling.inverse_cdf_sample(p, u) for u in (0.0, 0.0999, 0.1, 0.69, 0.7, 0.9999)] == [0, 0, 2, 2, 3, 3]


def _tvd_bound(kept, n, delta=1e-6):
    """E[TVD] <= 1/2 sum_v sqrt(p_v (1 - p_v) / N) <= 1/2 sqrt(k / N) (Cauchy-Schwarz, k kept
    tokens), and TVD moves by at most 1/N when one sample changes, so by McDiarmid
    P(TVD > E[TVD] + t) <= exp(-2 N t^2): with t = sqrt(ln(1/delta) / (2N)) the bound fails
    with probability below delta."""
    return 0.5 * math.sqrt(kept / n) + math.sqrt(math.log(1 / delta) / (2 * n))


@pytest.mark.parametrize("method", ["inverse_cdf", "gumbel_max"])
def test_sampling_reproduces_the_filtered_distribution(method):
    rng = np.random.default_rng(42)
    v, n = 40, 20000
    x = rng.normal(0, 1.5, v)
    params = dict(temperature=0.8, top_k=25, top_p=0.9, min_p=0.02, typical_p=1.0,
                  repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0)
    z = sampling.process_row(x, np.array([-1]), np.array([-1]), params, "hf")
    p = sampling.softmax_row(z)
    if method == "inverse_cdf":
        draws = [sampling.inverse_cdf_sample(p, u) for u in rng.uniform(size=n)]
    else:
        gumbel = -np.log(-np.log(rng.uniform(size=(n, v))))
        draws = [sampling.gumbel_max_sample(z, g) for g in gumbel]
    empirical = np.bincount(draws, minlength=v) / n
    assert np.all(empirical[p == 0] == 0)
    tvd = 0.5 * np.abs(empirical - p).sum()
    assert tvd < _tvd_bound(int((p > 0).sum()), n)


def test_orders_differ_where_temperature_position_matters():
    """llama.cpp applies temperature last, so top-p sees the untempered distribution."""
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 1.5, (1, 32))
    args = _row_args(logits, temperature=np.array([0.4]), top_p=np.array([0.8]))
    hf = sampling.sample_tokens(**args, order="hf")["probs"]
    llama = sampling.sample_tokens(**args, order="llama_cpp")["probs"]
    assert (hf > 0).sum() < (llama > 0).sum()


def test_per_row_parameters_are_independent():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (3, 16))
    args = _row_args(logits, temperature=np.array([0.5, 1.0, 2.0]), top_k=np.array([2, 0, 5]),
                     uniforms=np.array([0.1, 0.5, 0.9]))
    batch = sampling.sample_tokens(**args)
    for b in range(3):
        one = sampling.sample_tokens(**{k: (v[b:b + 1] if isinstance(v, np.ndarray) else v)
                                        for k, v in args.items()})
        np.testing.assert_array_equal(one["probs"][0], batch["probs"][b])
        assert one["sampled_ids"][0] == batch["sampled_ids"][b]


@pytest.mark.parametrize("impl", [sampling.sample_tokens, sampling_cpu.sample_tokens],
                         ids=["ref", "numba-cpu"])
@pytest.mark.parametrize("change,argument", [
    ({"temperature": np.array([0.0, 1.0])}, "temperature"),
    ({"temperature": np.array([-1.0, 1.0])}, "temperature"),
    ({"top_p": np.array([0.0, 1.0])}, "top_p"),
    ({"top_p": np.array([1.5, 1.0])}, "top_p"),
    ({"top_k": np.array([9, 0])}, "top_k"),
    ({"min_p": np.array([1.5, 0.0])}, "min_p"),
    ({"typical_p": np.array([0.0, 1.0])}, "typical_p"),
    ({"repetition_penalty": np.array([0.0, 1.0])}, "repetition_penalty"),
    ({"uniforms": np.array([1.0, 0.5])}, "uniforms"),
    ({"prompt_ids": np.array([[8], [0]])}, "prompt_ids"),
    ({"output_ids": np.array([[-2], [0]])}, "output_ids"),
    ({"logits": np.array([[np.nan] * 8, [0.0] * 8])}, "logits"),
    ({"logits": np.array([[-np.inf] * 8, [0.0] * 8])}, "logits"),
    ({"gumbel": np.zeros((2, 7))}, "gumbel"),
])
def test_bad_input_names_the_argument(impl, change, argument):
    args = _row_args(np.zeros((2, 8)))
    args.update(change)
    with pytest.raises(InputError, match=f"^{argument}"):
        impl(**args)


def test_vllm_order_has_no_typical_p():
    with pytest.raises(InputError, match="^typical_p"):
        sampling.sample_tokens(**_row_args(np.zeros((1, 4)), typical_p=np.array([0.5])), order="vllm")


@pytest.mark.crosscheck
@pytest.mark.parametrize("name", ["temperature", "top_k", "top_p", "min_p", "typical_p", "repetition"])
def test_each_processor_against_transformers(name):
    torch = pytest.importorskip("torch", reason="transformers' processors run on torch")
    lp = pytest.importorskip("transformers.generation.logits_process",
                             reason="transformers is the cross-check oracle")
    rng = np.random.default_rng({"temperature": 1, "top_k": 2, "top_p": 3, "min_p": 4,
                                 "typical_p": 5, "repetition": 6}[name])
    rows, v = 6, 50
    logits = rng.normal(0, 2, (rows, v))  # continuous values: no exact boundary ties
    ids = rng.integers(0, v, (rows, 7))
    for b in range(rows):
        setting = {"temperature": 0.3 + 0.4 * b, "top_k": 1 + 7 * b, "top_p": 0.15 + 0.15 * b,
                   "min_p": 0.02 + 0.05 * b, "typical_p": 0.15 + 0.15 * b, "repetition": 1.1 + 0.3 * b}[name]
        warper = {"temperature": lambda s: lp.TemperatureLogitsWarper(s),
                  "top_k": lambda s: lp.TopKLogitsWarper(s), "top_p": lambda s: lp.TopPLogitsWarper(s),
                  "min_p": lambda s: lp.MinPLogitsWarper(s), "typical_p": lambda s: lp.TypicalLogitsWarper(s),
                  "repetition": lambda s: lp.RepetitionPenaltyLogitsProcessor(s)}[name](setting)
        theirs = warper(torch.tensor(ids[b:b + 1]), torch.tensor(logits[b:b + 1].copy()))[0].numpy()
        ours = {"temperature": lambda x: sampling.apply_temperature(x, setting),
                "top_k": lambda x: sampling.top_k_filter(x, setting),
                "top_p": lambda x: sampling.top_p_filter(x, setting),
                "min_p": lambda x: sampling.min_p_filter(x, setting),
                "typical_p": lambda x: sampling.typical_p_filter(x, setting),
                "repetition": lambda x: sampling.apply_penalties(x, ids[b], np.array([-1]), setting, 0.0, 0.0),
                }[name](logits[b])
        np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(theirs))
        np.testing.assert_allclose(ours[np.isfinite(ours)], theirs[np.isfinite(theirs)], rtol=1e-15)


@pytest.mark.crosscheck
def test_hf_order_pipeline_against_transformers():
    torch = pytest.importorskip("torch", reason="transformers' processors run on torch")
    lp = pytest.importorskip("transformers.generation.logits_process",
                             reason="transformers is the cross-check oracle")
    rng = np.random.default_rng(11)
    rows, v = 4, 64
    logits = rng.normal(0, 2, (rows, v))
    prompt, output = rng.integers(0, v, (rows, 5)), rng.integers(0, v, (rows, 3))
    per_row = dict(temperature=np.array([0.7, 1.3, 0.9, 1.1]), top_k=np.array([20, 0, 40, 10]),
                   top_p=np.array([0.9, 0.8, 1.0, 0.95]), min_p=np.array([0.0, 0.05, 0.1, 0.0]),
                   typical_p=np.array([1.0, 0.9, 1.0, 0.8]), repetition_penalty=np.array([1.3, 1.0, 1.2, 2.0]))
    ours = sampling.sample_tokens(**_row_args(logits, prompt_ids=prompt, output_ids=output, **per_row))
    for b in range(rows):
        chain = lp.LogitsProcessorList([lp.RepetitionPenaltyLogitsProcessor(per_row["repetition_penalty"][b]),
                                        lp.TemperatureLogitsWarper(per_row["temperature"][b])])
        if per_row["top_k"][b]:
            chain.append(lp.TopKLogitsWarper(int(per_row["top_k"][b])))
        if per_row["top_p"][b] < 1:
            chain.append(lp.TopPLogitsWarper(per_row["top_p"][b]))
        if per_row["min_p"][b] > 0:
            chain.append(lp.MinPLogitsWarper(per_row["min_p"][b]))
        if per_row["typical_p"][b] < 1:
            chain.append(lp.TypicalLogitsWarper(per_row["typical_p"][b]))
        ids = torch.tensor(np.concatenate([prompt[b], output[b]])[None])
        probs = torch.softmax(chain(ids, torch.tensor(logits[b:b + 1].copy())), -1)[0].numpy()
        np.testing.assert_allclose(ours["probs"][b], probs, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("order", ["hf", "vllm", "llama_cpp"])
def test_numba_cpu_agrees_with_reference_on_random_batches(order):
    rng = np.random.default_rng({"hf": 1, "vllm": 2, "llama_cpp": 3}[order])
    for _ in range(10):
        b, v = 6, 40
        args = _row_args(rng.normal(0, 2, (b, v)), prompt_ids=rng.integers(-1, v, (b, 5)),
                         output_ids=rng.integers(-1, v, (b, 4)),
                         temperature=rng.uniform(0.3, 2.0, b), top_k=rng.integers(0, v + 1, b),
                         top_p=rng.uniform(0.2, 1.0, b), min_p=rng.uniform(0, 0.3, b),
                         typical_p=rng.uniform(0.2, 1.0, b) if order != "vllm" else np.ones(b),
                         repetition_penalty=rng.uniform(0.8, 2.0, b),
                         presence_penalty=rng.uniform(-0.5, 0.5, b),
                         frequency_penalty=rng.uniform(-0.5, 0.5, b), uniforms=rng.uniform(size=b),
                         gumbel=rng.gumbel(size=(b, v)))
        ref, fast = sampling.sample_tokens(**args, order=order), sampling_cpu.sample_tokens(**args, order=order)
        for key in ("sampled_ids", "gumbel_ids", "greedy_ids"):
            np.testing.assert_array_equal(fast[key], ref[key], err_msg=key)
        np.testing.assert_allclose(fast["probs"], ref["probs"], rtol=1e-12, atol=1e-15)


def test_probs_are_a_distribution_over_the_kept_tokens():
    rng = np.random.default_rng(12)
    for _ in range(20):
        b, v = 4, 30
        logits = rng.normal(0, 3, (b, v))
        out = sampling.sample_tokens(**_row_args(logits, top_k=rng.integers(0, v + 1, b),
                                                 top_p=rng.uniform(0.05, 1.0, b),
                                                 min_p=rng.uniform(0, 0.5, b), uniforms=rng.uniform(size=b),
                                                 gumbel=rng.gumbel(size=(b, v))))
        np.testing.assert_allclose(out["probs"].sum(1), 1.0, rtol=1e-14)
        rows = np.arange(b)
        assert np.all(out["probs"][rows, out["sampled_ids"]] > 0)
        assert np.all(out["probs"][rows, out["gumbel_ids"]] > 0)
        assert np.all(out["probs"][rows, out["greedy_ids"]] == out["probs"].max(1))  # no typical-p here


def test_numba_cuda_agrees_with_reference_on_random_batches():
    from llmref.backends import availability

    ok, why = availability("numba-cuda")
    if not ok:
        pytest.skip(f"numba-cuda unavailable: {why}")
    from llmref.accel.numba_cuda import sampling as sampling_cuda

    rng = np.random.default_rng(21)
    for order in ("hf", "vllm", "llama_cpp"):
        b, v = 4, 24
        args = _row_args(rng.normal(0, 2, (b, v)), prompt_ids=rng.integers(-1, v, (b, 3)),
                         output_ids=rng.integers(-1, v, (b, 3)), temperature=rng.uniform(0.3, 2.0, b),
                         top_k=rng.integers(0, v + 1, b), top_p=rng.uniform(0.2, 1.0, b),
                         min_p=rng.uniform(0, 0.3, b),
                         typical_p=rng.uniform(0.2, 1.0, b) if order != "vllm" else np.ones(b),
                         repetition_penalty=rng.uniform(0.8, 2.0, b), uniforms=rng.uniform(size=b),
                         gumbel=rng.gumbel(size=(b, v)))
        ref, gpu = sampling.sample_tokens(**args, order=order), sampling_cuda.sample_tokens(**args, order=order)
        for key in ("sampled_ids", "gumbel_ids", "greedy_ids"):
            np.testing.assert_array_equal(gpu[key], ref[key], err_msg=f"{order} {key}")
        np.testing.assert_allclose(gpu["probs"], ref["probs"], rtol=1e-12, atol=1e-15)
