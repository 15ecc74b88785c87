"""Inference paths of the decoder: prefill + decode through the contiguous and the paged KV
cache (prefix caching on) equal the full forward for every tiny config; generation goldens
follow from the full forward; continuous batching gives each request the tokens it gets
alone, frees its blocks, and reports its counts."""
import numpy as np
import pytest

from llmref.errors import InputError
from llmref.ref.model import ContiguousKVCache, Sampling, cached_logits, decoder_forward, \
    generate, next_tokens
from llmref.ref.model_config import init_weights, tiny_config
from llmref.ref.model_serving import PagedModelCache, Request, paged_logits, serve

DECODERS = ["tiny_llama", "tiny_mistral", "tiny_gemma", "tiny_mixtral", "tiny_deepseek_v3"]
TIGHT = dict(rtol=1e-12, atol=1e-12)  # float64: the paths differ only in summation order


def _model(name, seed=0):
    c = tiny_config(name)
    return c, init_weights(c, np.random.default_rng(seed))


@pytest.mark.parametrize("name", DECODERS)
def test_contiguous_cached_decode_equals_the_full_forward(name):
    c, w = _model(name)
    ids = np.random.default_rng(1).integers(0, c.vocab_size, size=(3, 10))
    full = decoder_forward(c, w, ids)
    for prefill in (1, 4, 9):
        np.testing.assert_allclose(cached_logits(c, w, ids[:, :prefill], ids[:, prefill:]),
                                   full[:, prefill - 1:], **TIGHT)


@pytest.mark.parametrize("name", [n for n in DECODERS if n != "tiny_mistral"])
@pytest.mark.parametrize("block_size", [1, 3, 4])
def test_paged_decode_with_prefix_caching_equals_the_full_forward(name, block_size):
    """Three sequences whose prompts share a 6-token system prompt: the second and third
    reuse its cached blocks (their keys are never recomputed) and still match the full
    forward; then all three decode together through their block tables."""
    c, w = _model(name)
    rng = np.random.default_rng(2)
    system = rng.integers(0, c.vocab_size, size=6)
    prompts = np.stack([np.concatenate([system, rng.integers(0, c.vocab_size, size=3)])
                        for _ in range(3)])  # (3, 9)
    continuation = rng.integers(0, c.vocab_size, size=(3, 4))
    full = decoder_forward(c, w, np.concatenate([prompts, continuation], axis=1))
    np.testing.assert_allclose(paged_logits(c, w, prompts, continuation, block_size=block_size),
                               full[:, 8:], **TIGHT)
    np.testing.assert_allclose(paged_logits(c, w, prompts, continuation, block_size=block_size,
                                            prefix_caching=False), full[:, 8:], **TIGHT)


def test_sliding_window_limits_the_keys_and_paged_decode_refuses_a_longer_context():
    """Mistral's window of W = 4 keys (the current one included): the full forward differs
    from the unwindowed model once a sequence passes 4 tokens, the contiguous cache matches
    it, and the paged decode (which attends the whole context) refuses rather than differ."""
    c, w = _model("tiny_mistral")
    unwindowed = tiny_config("tiny_llama")
    ids = np.random.default_rng(11).integers(0, c.vocab_size, size=(2, 9))
    full = decoder_forward(c, w, ids)
    np.testing.assert_allclose(full[:, :4], decoder_forward(unwindowed, w, ids)[:, :4], **TIGHT)
    assert np.abs(full[:, 4:] - decoder_forward(unwindowed, w, ids)[:, 4:]).max() > 1e-3
    np.testing.assert_allclose(cached_logits(c, w, ids[:, :3], ids[:, 3:]), full[:, 2:], **TIGHT)
    with pytest.raises(InputError, match="^sliding_window: paged decode attends the whole context"):
        paged_logits(c, w, ids[:, :3], ids[:, 3:])


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_deepseek_v3"])
def test_a_prompt_entirely_in_cached_blocks_still_computes_its_last_token(name):
    """The same 8-token prompt twice with blocks of 4: every block of the second hits, its
    last token is recomputed for its logits (and not written again)."""
    c, w = _model(name)
    prompt = np.random.default_rng(3).integers(0, c.vocab_size, size=8)
    cache = PagedModelCache(num_blocks=8, block_size=4)
    first = cache.prefill(c, w, 0, prompt, cache.arrive(0, prompt))
    cached = cache.arrive(1, prompt)
    assert cached == 7 and cache.hit_tokens[1] == 8
    assert cache.blocks.tables[1] == cache.blocks.tables[0]  # shared, not copied
    second = cache.prefill(c, w, 1, prompt, cached)
    np.testing.assert_allclose(second[:, -1], first[:, -1], **TIGHT)
    token = np.array([5, 5])
    decoded = cache.decode(c, w, [0, 1], token)
    expected = decoder_forward(c, w, np.concatenate([prompt, [5]])[None])[:, -1]
    np.testing.assert_allclose(decoded[:, 0], np.repeat(expected, 2, axis=0), **TIGHT)
    cache.blocks.check_invariants()


def test_latent_attention_caches_only_the_latent():
    """MLA's cache per token and layer is kv_lora_rank + qk_rope_head_dim numbers, once."""
    c, w = _model("tiny_deepseek_v3")
    cache = ContiguousKVCache(1, 8)
    cache.forward(c, w, np.array([[1, 2, 3]]))
    assert cache.k[0].shape == (1, 1, 8, c.kv_lora_rank + c.qk_rope_head_dim)
    assert cache.v[0] is cache.k[0]


@pytest.mark.parametrize("name", DECODERS)
def test_greedy_generation_is_the_argmax_of_the_full_forward(name):
    c, w = _model(name)
    prompt = np.random.default_rng(4).integers(0, c.vocab_size, size=(2, 5))
    tokens, logits = generate(c, w, prompt, 5)
    full = decoder_forward(c, w, np.concatenate([prompt, tokens], axis=1))
    np.testing.assert_allclose(logits, full[:, 4:-1], **TIGHT)
    np.testing.assert_array_equal(tokens, full[:, 4:-1].argmax(axis=-1))


def test_sampled_generation_is_the_inverse_cdf_at_the_supplied_uniforms():
    c, w = _model("tiny_llama")
    rng = np.random.default_rng(5)
    prompt = rng.integers(0, c.vocab_size, size=(2, 4))
    uniforms = rng.uniform(size=(2, 6))
    sampling = Sampling(greedy=False, temperature=0.7, top_k=10)
    tokens, _ = generate(c, w, prompt, 6, uniforms, sampling)
    full = decoder_forward(c, w, np.concatenate([prompt, tokens], axis=1))[:, 3:-1]  # (2, 6, V)
    for b in range(2):
        for t in range(6):
            z = full[b, t] / 0.7
            z = np.where(z >= np.sort(z)[-10], z, -np.inf)
            p = np.exp(z - z.max())
            cdf = np.cumsum(p / p.sum())
            assert tokens[b, t] == np.flatnonzero(cdf > uniforms[b, t])[0]


def test_next_tokens_mixes_greedy_and_sampled_rows():
    logits = np.array([[0.0, 3.0, 1.0], [0.0, 3.0, 1.0]])
    rows = [Sampling(), Sampling(greedy=False)]
    np.testing.assert_array_equal(next_tokens(logits, [0.0, 0.0], rows), [1, 0])


# ----------------------------------------------------------------------------- scheduler

def _workload(c, rng, n, system_len=8, max_new=(2, 5)):
    system = rng.integers(0, c.vocab_size, size=system_len).tolist()
    requests = []
    for i in range(n):
        tail = rng.integers(0, c.vocab_size, size=int(rng.integers(1, 4))).tolist()
        sampling = Sampling(greedy=bool(i % 2 == 0), temperature=0.9, top_k=0)
        requests.append(Request(system + tail, int(rng.integers(*max_new)), sampling,
                                rng.uniform(size=6).tolist(), arrival=i // 2))
    return requests


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_mixtral", "tiny_deepseek_v3"])
def test_continuous_batching_gives_each_request_its_sequential_tokens(name):
    c, w = _model(name)
    requests = _workload(c, np.random.default_rng(6), 7)
    outputs, stats = serve(c, w, requests, num_slots=3, num_blocks=24, block_size=4)
    for r, out in zip(requests, outputs):
        alone, _ = generate(c, w, np.array([r.prompt]), r.max_new_tokens,
                            np.array([r.uniforms[:r.max_new_tokens]]), r.sampling)
        assert out == alone[0].tolist()
    assert stats.generated_tokens == sum(r.max_new_tokens for r in requests)
    assert stats.prefills == len(requests)
    assert max(stats.occupancy) == 1.0  # the slots fill up
    assert stats.decode_steps < stats.generated_tokens  # requests shared decode steps


def test_prefix_cache_hit_rate_of_requests_sharing_a_system_prompt():
    """Six requests, an 8-token system prompt (2 blocks of 4) + a 1-3 token tail (no further
    full block): the first misses both system blocks, the five others hit both."""
    c, w = _model("tiny_llama")
    requests = _workload(c, np.random.default_rng(7), 6)
    _, stats = serve(c, w, requests, num_slots=2, num_blocks=32, block_size=4)
    assert (stats.prompt_blocks, stats.cached_blocks) == (12, 10)
    assert stats.hit_rate == pytest.approx(10 / 12)
    assert stats.cached_tokens == 5 * 8
    print(f"prefix-cache hit rate for 6 requests sharing an 8-token system prompt: "
          f"{stats.hit_rate:.3f}; {stats.to_dict()}")
    _, cold = serve(c, w, requests, num_slots=2, num_blocks=32, block_size=4, prefix_caching=False)
    assert cold.hit_rate == 0.0 and cold.prefill_tokens == stats.prefill_tokens + stats.cached_tokens


def test_scheduler_admits_between_decode_steps_and_frees_blocks():
    """Two slots, requests arriving over time: a request is admitted as soon as a slot and
    its blocks are free, and finished requests give their blocks back (all free at the end)."""
    c, w = _model("tiny_llama")
    rng = np.random.default_rng(8)
    requests = [Request(rng.integers(0, 64, size=5).tolist(), 3, arrival=a) for a in (0, 0, 1, 5)]
    outputs, stats = serve(c, w, requests, num_slots=2, num_blocks=8, block_size=4)
    assert [len(o) for o in outputs] == [3, 3, 3, 3]
    assert max(stats.occupancy) == 1.0 and min(stats.occupancy) == 0.5
    assert stats.steps >= 6  # the last request arrives at step 5


def test_scheduler_waits_for_blocks_instead_of_running_out():
    """Blocks for one request at a time (2 of 4 tokens each): the others wait, nothing fails."""
    c, w = _model("tiny_llama")
    requests = [Request([1, 2, 3, 4, 5], 3) for _ in range(3)]
    outputs, stats = serve(c, w, requests, num_slots=3, num_blocks=2, block_size=4,
                           prefix_caching=False)
    assert outputs[0] == outputs[1] == outputs[2] and max(stats.occupancy) == pytest.approx(1 / 3)


def test_scheduler_rejects_bad_requests_naming_them():
    c, w = _model("tiny_llama")
    with pytest.raises(InputError, match=r"^requests\[0\]\.prompt: 30 \+ 3 new tokens exceed"):
        serve(c, w, [Request(list(range(30)), 3)])
    with pytest.raises(InputError, match=r"^requests\[1\]\.uniforms: 0 for 2 sampled tokens"):
        serve(c, w, [Request([1], 1), Request([1], 2, Sampling(greedy=False))])
    with pytest.raises(InputError, match="^num_blocks: must be >= 2"):
        serve(c, w, [Request([1, 2, 3, 4, 5], 3)], num_blocks=1, block_size=4)
    with pytest.raises(InputError, match=r"^requests\[0\]\.prompt: value 64 is out of range"):
        serve(c, w, [Request([64], 1)])


def test_contiguous_cache_overflow_is_an_error():
    c, w = _model("tiny_llama")
    cache = ContiguousKVCache(1, 4)
    cache.forward(c, w, np.array([[1, 2, 3]]))
    with pytest.raises(InputError, match="^ids: 5 tokens exceed the cache capacity 4"):
        cache.forward(c, w, np.array([[1, 2]]))
