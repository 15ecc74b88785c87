"""Logit processors and deterministic sampling: cited vectors, statistics, transformers
cross-checks, pipeline orders, bad input on every backend (in a child process), and the
float32 tie model: its decisions, a torch float32 pipeline passing the audit, and one that
takes the other side of a near-tie passing only because of it."""
import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import llmref
from llmref import InputError
from llmref.accel.numba_cpu import sample_tokens as sampling_cpu
from llmref.cases import inputs_at, make_inputs, widen
from llmref.ref import sample_tokens as sampling
from llmref.spec import load_spec, parse_spec_file

BACKENDS = {"ref": "llmref.ref.sample_tokens", "numba-cpu": "llmref.accel.numba_cpu.sample_tokens",
            "numba-cuda": "llmref.accel.numba_cuda.sample_tokens"}
U32 = 2.0 ** -24


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


BAD = [
    ("temperature_zero", {"temperature": np.array([0.0, 1.0])}, "temperature"),
    ("temperature_negative", {"temperature": np.array([-1.0, 1.0])}, "temperature"),
    ("temperature_rows", {"temperature": np.ones(3)}, "temperature"),
    ("top_p_zero", {"top_p": np.array([0.0, 1.0])}, "top_p"),
    ("top_p_above_one", {"top_p": np.array([1.5, 1.0])}, "top_p"),
    ("top_k_above_vocab", {"top_k": np.array([9, 0])}, "top_k"),
    ("top_k_negative", {"top_k": np.array([-1, 0])}, "top_k"),
    ("top_k_float", {"top_k": np.array([1.0, 0.0])}, "top_k"),
    ("top_k_rows", {"top_k": np.zeros(1, np.int64)}, "top_k"),
    ("min_p_above_one", {"min_p": np.array([1.5, 0.0])}, "min_p"),
    ("typical_p_zero", {"typical_p": np.array([0.0, 1.0])}, "typical_p"),
    ("repetition_zero", {"repetition_penalty": np.array([0.0, 1.0])}, "repetition_penalty"),
    ("presence_nan", {"presence_penalty": np.array([np.nan, 0.0])}, "presence_penalty"),
    ("uniform_one", {"uniforms": np.array([1.0, 0.5])}, "uniforms"),
    ("prompt_id_vocab", {"prompt_ids": np.array([[8], [0]])}, "prompt_ids"),
    ("prompt_ids_1d", {"prompt_ids": np.array([0, 1])}, "prompt_ids"),
    ("prompt_ids_rows", {"prompt_ids": np.zeros((3, 1), np.int64)}, "prompt_ids"),
    ("output_id_below_padding", {"output_ids": np.array([[-2], [0]])}, "output_ids"),
    ("output_ids_float", {"output_ids": np.zeros((2, 1))}, "output_ids"),
    ("logits_nan", {"logits": np.array([[np.nan] * 8, [0.0] * 8])}, "logits"),
    ("logits_row_all_masked", {"logits": np.array([[-np.inf] * 8, [0.0] * 8])}, "logits"),
    ("logits_no_vocab", {"logits": np.zeros((2, 0)), "gumbel": np.zeros((2, 0))}, "logits"),
    ("logits_3d", {"logits": np.zeros((2, 8, 1))}, "logits"),
    ("gumbel_shape", {"gumbel": np.zeros((2, 7))}, "gumbel"),
    ("gumbel_inf", {"gumbel": np.full((2, 8), np.inf)}, "gumbel"),
    ("order", {"order": "sglang"}, "order"),
    ("vllm_typical", {"order": "vllm", "typical_p": np.array([0.5, 1.0])}, "typical_p"),
]


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_bad_input_raises_input_error_naming_the_argument(backend, probe):
    """Every backend checks through the reference's sample_tokens_args before a kernel runs."""
    from llmref.backends import availability

    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
    calls = [(label, {**_row_args(np.zeros((2, 8))), "order": "hf", **change}) for label, change, _ in BAD]
    results = probe(f"{BACKENDS[backend]}:sample_tokens", calls)
    wrong = {label: results.get(label) for label, _, name in BAD if results.get(label) != ("InputError", name)}
    assert not wrong, wrong


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
    from llmref.accel.numba_cuda import sample_tokens as sampling_cuda

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


# --- The float32 tie model (sample_tokens_ties) ----------------------------------------------


def _fed(logits):
    """Logits as fed at float32 (exact float32 values, widened)."""
    return np.asarray(logits, np.float32).astype(np.float64)


def _ties(args, order="hf"):
    return sampling.sample_tokens_ties("float32", **args, order=order)


def test_far_from_every_boundary_nothing_is_a_near_tie():
    args = _row_args(_fed([[3.0, 1.0, 0.0, -1.0, -2.0]]), top_p=np.array([0.9]), top_k=np.array([3]),
                     min_p=np.array([0.05]), uniforms=np.array([0.5]),
                     gumbel=np.array([[0.0, 0.5, 0.1, 0.2, 0.3]]))
    for name, (mask, _) in _ties(args).items():
        assert not mask.any(), name


def test_a_top_p_boundary_within_float32_error_flips_the_crossing_token():
    """The mass before token 2 equals top_p up to 1e-9, far inside float32's error: keeping
    and dropping token 2 are both accepted, and the alternative is exactly the reference with
    top_p on the other side of that mass."""
    logits = _fed([[np.log(0.5), np.log(0.3), np.log(0.15), np.log(0.05)]])
    p = sampling.softmax_row(logits[0])
    mass = p[0] + p[1]
    args = _row_args(logits, top_p=np.array([mass + 1e-9]), uniforms=np.array([0.95]))
    expected = sampling.sample_tokens(**args)
    assert expected["probs"][0, 2] > 0  # kept: the mass before it is below top_p
    ties = _ties(args)
    other = sampling.sample_tokens(**{**args, "top_p": np.array([mass - 1e-9])})
    assert other["probs"][0, 2] == 0
    mask, alternative = ties["probs"]
    assert mask[0, 2]
    np.testing.assert_array_equal(alternative, other["probs"])
    assert ties["sampled_ids"][1][0] == other["sampled_ids"][0] != expected["sampled_ids"][0]


def test_a_min_p_threshold_within_float32_error_flips_that_token():
    logits = _fed([[0.0, -1.0, -2.0, -3.0]])
    ratio = np.exp(logits[0, 2] - logits[0, 0])  # p_2 / max p
    args = _row_args(logits, min_p=np.array([ratio * (1 - 1e-10)]), uniforms=np.array([0.99]))
    mask, alternative = _ties(args)["probs"]
    other = sampling.sample_tokens(**{**args, "min_p": np.array([ratio * (1 + 1e-10)])})
    assert mask[0, 2] and alternative[0, 2] == 0 < sampling.sample_tokens(**args)["probs"][0, 2]
    np.testing.assert_array_equal(alternative, other["probs"])  # renormalised over the rest


def test_a_top_k_boundary_one_float32_ulp_apart_swaps_the_two_tokens():
    a = np.float32(1.0)
    logits = _fed([[3.0, np.nextafter(a, np.float32(2)), 0.5, a, -1.0]])  # 2nd and 4th 1 ulp apart
    args = _row_args(logits, top_k=np.array([2]), temperature=np.array([0.7]))
    mask, alternative = _ties(args)["probs"]
    assert mask[0, 1] and mask[0, 3]
    assert alternative[0, 1] == 0 and alternative[0, 3] > 0


def test_a_uniform_within_float32_error_of_the_cdf_takes_the_next_token():
    logits = _fed([[0.0, 0.5, -0.5, 1.0]])
    p = sampling.softmax_row(logits[0])
    args = _row_args(logits, uniforms=np.array([p[0] + p[1] - 1e-12]))
    assert sampling.sample_tokens(**args)["sampled_ids"][0] == 1
    mask, alternative = _ties(args)["sampled_ids"]
    assert mask[0] and alternative[0] == 2
    args["uniforms"] = np.array([p[0] + p[1] + 1e-12])
    mask, alternative = _ties(args)["sampled_ids"]
    assert mask[0] and alternative[0] == 1


def test_greedy_and_gumbel_argmax_one_ulp_apart_accept_the_runner_up():
    a = np.float32(2.0)
    logits = _fed([[1.0, a, np.nextafter(a, np.float32(3)), 0.0]])
    args = _row_args(logits, gumbel=np.zeros((1, 4)))
    ties = _ties(args)
    for name in ("greedy_ids", "gumbel_ids"):
        mask, alternative = ties[name]
        assert mask[0] and alternative[0] == 1, name
    exact = _ties(_row_args(_fed([[1.0, 2.0, 2.0, 0.0]])))  # an exact tie stays with the lower id
    assert not exact["greedy_ids"][0].any()


def _typical_margins(x, order):
    """Smallest ratio of a typical-p decision's float64 gap to its float32 error bound, over
    the rows that run typical-p: the cumulative mass along the distance order against
    typical_p (error u (2 sqrt(V) + 16) * mass + u) and the distances against the threshold
    distance (error u (sqrt(V) + 16) (|log p| + |H| + 1) each, log p and the entropy H both
    carrying the softmax's and a V-term sum's roundings)."""
    logits, prompt_ids, output_ids, top_k, _, per_row = sampling.sample_tokens_args(**x, order=order)
    vocab, worst = logits.shape[1], np.inf
    for b in range(logits.shape[0]):
        params = sampling.row_params(b, top_k=top_k, **{k: v for k, v in per_row.items() if k != "uniforms"})
        if params["typical_p"] >= 1:
            continue
        steps = sampling.step_functions(prompt_ids[b], output_ids[b], params)
        v = logits[b]
        for step in sampling.ORDERS[order]:
            if step == "typical_p":
                shifted = v - v.max()
                log_p = shifted - np.log(np.exp(shifted).sum())
                p = np.exp(log_p)
                entropy = -np.sum(np.where(p > 0, p * np.where(p > 0, log_p, 0), 0))
                distance = np.abs(-log_p - entropy)
                order_d = np.lexsort((np.arange(vocab), distance))
                cumulative = np.cumsum(p[order_d])
                finite = np.isfinite(distance[order_d])
                mass_err = U32 * (2 * np.sqrt(vocab) + 16) * cumulative + U32
                worst = min(worst, (np.abs(cumulative - params["typical_p"]) / mass_err)[finite].min())
                last = min(int((cumulative < params["typical_p"]).sum()), vocab - 1)
                threshold = distance[order_d[last]]
                d_err = U32 * (np.sqrt(vocab) + 16) * (np.abs(np.where(np.isfinite(log_p), log_p, 0))
                                                      + abs(entropy) + 1)
                other = np.isfinite(distance) & (distance != threshold)
                worst = min(worst, (np.abs(distance - threshold)[other]
                                    / (d_err[other] + d_err[order_d[last]])).min())
            v = steps[step](v)
    return worst


def test_typical_p_decisions_of_every_case_are_far_from_a_float32_tie():
    """sample_tokens_ties does not model typical-p: this is why that is sound for the cases."""
    spec = load_spec("sample_tokens")
    for case in spec.cases:
        fed = widen(inputs_at(spec, make_inputs(spec, case), "float32"))
        assert _typical_margins(fed, case.params["order"]) > 100, case.id


def _torch_sample_tokens(torch):
    """The spec's pipeline in torch, in the precision of the logits, with transformers' and
    vLLM's formulations of the warpers (top-p as ascending cumulative mass <= 1 - top_p, the
    top-k threshold from torch.topk) and sampling by torch.searchsorted on a float32 cumsum
    (torch.multinomial cannot take supplied uniforms)."""

    def fn(logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
           repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel, order="hf"):
        x = torch.from_numpy(np.ascontiguousarray(logits))
        dt, (rows, vocab) = x.dtype, x.shape
        out = {"probs": torch.empty_like(x), "sampled_ids": np.empty(rows, np.int64),
               "gumbel_ids": np.empty(rows, np.int64), "greedy_ids": np.empty(rows, np.int64)}

        def scalar(values, b):
            return torch.tensor(float(values[b]), dtype=dt)

        for b in range(rows):
            z = x[b].clone()
            for step in sampling.ORDERS[order]:
                if step == "penalties":
                    ids = torch.from_numpy(np.concatenate([prompt_ids[b], output_ids[b]]))
                    seen = torch.zeros(vocab, dtype=torch.bool)
                    seen[ids[ids >= 0]] = True
                    r = scalar(repetition_penalty, b)
                    z = torch.where(seen, torch.where(z > 0, z / r, z * r), z)
                    o = torch.from_numpy(output_ids[b])
                    counts = torch.bincount(o[o >= 0], minlength=vocab).to(dt)
                    z = (z - scalar(frequency_penalty, b) * counts
                         - scalar(presence_penalty, b) * (counts > 0).to(dt))
                    out["greedy_ids"][b] = int(torch.argmax(z))  # the first maximum
                elif step == "temperature":
                    z = z / scalar(temperature, b)
                elif step == "top_k" and top_k[b]:
                    z = torch.where(z < torch.topk(z, int(top_k[b])).values[-1], -torch.inf, z)
                elif step == "top_p" and top_p[b] < 1:
                    ascending, idx = torch.sort(z, stable=True)
                    remove = torch.softmax(ascending, -1).cumsum(-1) <= 1 - scalar(top_p, b)
                    remove[-1] = False
                    z = z.scatter(0, idx[remove], -torch.inf)
                elif step == "min_p" and min_p[b] > 0:
                    p = torch.softmax(z, -1)
                    z = torch.where(p < scalar(min_p, b) * p.max(), -torch.inf, z)
                elif step == "typical_p" and typical_p[b] < 1:
                    log_p = torch.log_softmax(z, -1)
                    distance = torch.abs(-log_p - (-(log_p * log_p.exp()).nansum()))
                    ranked, idx = torch.sort(distance, stable=True)
                    cumulative = torch.softmax(z[idx], -1).cumsum(-1)
                    last = min(int((cumulative < scalar(typical_p, b)).sum()), vocab - 1)
                    z = z.scatter(0, idx[ranked > ranked[last]], -torch.inf)
            probs = torch.softmax(z, -1)
            out["probs"][b] = probs
            j = int(torch.searchsorted(probs.cumsum(-1), scalar(uniforms, b).reshape(1), right=True))
            out["sampled_ids"][b] = j if j < vocab else int(torch.nonzero(probs > 0)[-1])
            g = torch.from_numpy(np.ascontiguousarray(gumbel[b])).to(dt)
            out["gumbel_ids"][b] = int(torch.argmax(torch.where(z > -torch.inf, z + g, -torch.inf)))
        out["probs"] = out["probs"].numpy()
        return out

    return fn


@pytest.mark.crosscheck
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_pipeline_passes_the_audit(dtype):
    """Full tier included: vocab_128k holds a top-p boundary token within float32's error
    bound, which the tie model accepts either way."""
    torch = pytest.importorskip("torch", reason="torch is in the crosscheck extra")
    report = llmref.audit("sample_tokens", _torch_sample_tokens(torch), dtype=dtype, tier="full")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]


def _spec_with_one_case(tmp_path, case, ties=True):
    """sample_tokens with only `case` (and no wrong variants), as an unshipped spec file."""
    data = yaml.safe_load(load_spec("sample_tokens").path.read_text(encoding="utf-8"))
    data["cases"], data["wrong_variants"] = [case], []
    if not ties:
        del data["ties"]
    path = tmp_path / ("with_ties" if ties else "without_ties") / "sample_tokens.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return parse_spec_file(path)


@pytest.mark.crosscheck
def test_torch_float32_on_the_other_side_of_a_cdf_tie_passes_only_through_the_tie_model(tmp_path):
    """A uniform placed between torch's float32 CDF and the float64 one: torch samples the
    next token, the float64 reference this one. The audit accepts torch's id as a tie flip;
    without the tie model the same output is a mismatch. (The wrong variants still fail the
    shipped cases: tests/test_conformance.py.)"""
    torch = pytest.importorskip("torch", reason="torch is in the crosscheck extra")
    logits = np.random.default_rng(5).normal(0, 2, 48).astype(np.float32)
    cdf32 = torch.softmax(torch.from_numpy(logits), -1).cumsum(-1).numpy()
    cdf64 = np.cumsum(sampling.softmax_row(logits.astype(np.float64)))
    j = int(np.flatnonzero(cdf32[:-1] < cdf64[:-1])[0])  # float32 rounds this mass down
    uniform = float(cdf32[j])  # float64: cdf64[j] > u, token j; float32: cdf32[j] <= u, next
    zeros = [0.0]
    case = {"id": "cdf_tie", "dims": {"B": 1, "V": 48, "P": 1, "O": 1}, "inputs": {
        "logits": {"values": [logits.astype(np.float64).tolist()]},
        "prompt_ids": {"values": [[-1]]}, "output_ids": {"values": [[-1]]},
        "temperature": {"values": [1.0]}, "top_k": {"values": [0]}, "top_p": {"values": [1.0]},
        "min_p": {"values": zeros}, "typical_p": {"values": [1.0]},
        "repetition_penalty": {"values": [1.0]}, "presence_penalty": {"values": zeros},
        "frequency_penalty": {"values": zeros}, "uniforms": {"values": [uniform]},
        "gumbel": {"values": [[0.0] * 48]}}}
    fn = _torch_sample_tokens(torch)
    with_ties = llmref.audit(_spec_with_one_case(tmp_path, case), fn, dtype="float32")
    assert with_ties.passed, [(r.case, r.detail) for r in with_ties.failures()]
    flips = {c.output: c.metrics["tie_flips"] for c in with_ties.results[0].comparisons}
    assert flips["sampled_ids"] == 1
    without = llmref.audit(_spec_with_one_case(tmp_path, case, ties=False), fn, dtype="float32")
    assert [c.output for c in without.results[0].comparisons if c.outcome.value != "PASSED"] == ["sampled_ids"]


@given(st.lists(st.sampled_from([-np.inf, -2.0, -0.0, 0.0, 0.5, 1.0, 3.0]) | st.floats(-5, 5, width=32),
                min_size=1, max_size=80), st.data())
@settings(max_examples=300, deadline=None)
def test_the_numba_cpu_kth_largest_is_the_kth_of_the_descending_sort(values, data):
    row = np.array(values, dtype=np.float32)
    k = data.draw(st.integers(1, row.size))
    assert sampling_cpu._kth_largest(row, k) == np.sort(row)[::-1][k - 1]
