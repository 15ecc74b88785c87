"""LoRA: merge and unmerge equal the unmerged layer, dropout is off at evaluation, QLoRA on
an NF4 base, bad input, and a cross-check against peft on a tiny transformers Llama."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmref.errors import InputError
from llmref.ref.lora import LoRALinear, lora_linear, lora_scaling, nf4_base, nf4_weight, \
    qlora_linear, qlora_merged_weight
from llmref.ref.model import decoder_forward
from llmref.ref.model_config import TINY_CONFIGS, init_weights, load_config, to_checkpoint
from llmref.tensorfile import dumps


def _layer(rng, n=12, k=16, r=3):
    return (rng.normal(size=(n, k)) / 4, rng.normal(size=(r, k)) / 4, rng.normal(size=(n, r)) / 4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 9), k=st.integers(1, 9),
       alpha=st.floats(0.5, 64), rslora=st.booleans())
def test_merged_equals_unmerged_and_unmerge_restores(seed, n, k, alpha, rslora):
    rng = np.random.default_rng(seed)
    r = int(rng.integers(1, min(n, k) + 1))
    w, a, b = _layer(rng, n, k, r)
    x = rng.normal(size=(5, k))
    layer = LoRALinear(w, a, b, alpha, use_rslora=rslora)
    unmerged = layer(x)
    np.testing.assert_allclose(unmerged, lora_linear(x, w, a, b, alpha, rslora)["y"], rtol=1e-13)
    layer.merge()
    np.testing.assert_allclose(layer(x), unmerged, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(layer.weight, lora_linear(x, w, a, b, alpha, rslora)["merged_weight"],
                               rtol=1e-14)
    layer.unmerge()
    np.testing.assert_allclose(layer.weight, w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer(x), unmerged, rtol=1e-11, atol=1e-12)


def test_scaling_is_alpha_over_rank_or_over_its_square_root():
    assert lora_scaling(16, 4) == 4.0 and lora_scaling(16, 4, use_rslora=True) == 8.0


def test_merging_twice_is_refused_and_unmerging_an_unmerged_layer_too():
    w, a, b = _layer(np.random.default_rng(0))
    layer = LoRALinear(w, a, b, 8.0)
    with pytest.raises(InputError, match="^unmerge: the adapter is not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(InputError, match="^merge: the adapter is already merged"):
        layer.merge()


def test_dropout_is_off_at_evaluation_and_scales_the_kept_inputs_when_training():
    rng = np.random.default_rng(1)
    w, a, b = _layer(rng)
    x = rng.normal(size=(4, 16))
    layer = LoRALinear(w, a, b, 8.0, dropout=0.25)
    np.testing.assert_array_equal(layer(x), LoRALinear(w, a, b, 8.0)(x))
    keep = rng.random(x.shape) > 0.25
    expected = x @ w.T + (8.0 / 3) * ((x * keep / 0.75) @ a.T) @ b.T
    np.testing.assert_allclose(layer(x, training=True, keep=keep), expected, rtol=1e-13)
    with pytest.raises(InputError, match="^keep: training with dropout 0.25 needs a keep mask"):
        layer(x, training=True)


@pytest.mark.parametrize("args,match", [
    (dict(r=13), r"^lora_a: rank r=13 must lie in \[1, min\(in_features, out_features\) = 12\]"),
    (dict(bad_b=(12, 2)), r"^lora_b: shape \(12, 2\), expected \(out_features, r\) = \(12, 3\)"),
    (dict(bad_x=15), "^x: last axis 15 differs from the layer's in_features 16"),
    (dict(alpha=0.0), "^alpha: must be finite and > 0"),
])
def test_bad_input_names_the_argument(args, match):
    rng = np.random.default_rng(2)
    r = args.get("r", 3)
    w = rng.normal(size=(12, 16))
    a = rng.normal(size=(r, 16))
    b = rng.normal(size=args.get("bad_b", (12, r)))
    x = rng.normal(size=(2, args.get("bad_x", 16)))
    with pytest.raises(InputError, match=match):
        lora_linear(x, w, a, b, args.get("alpha", 8.0))


def test_qlora_on_an_nf4_base_weight():
    """QLoRA: the frozen base stored as NF4 (the nf4_quantize component, blocks of 64),
    dequantized for the product; the adapter added unquantized. Merging gives a dense
    weight; quantizing it again would round most of the adapter's update away."""
    rng = np.random.default_rng(3)
    w, a, b = _layer(rng, n=16, k=32, r=4)
    x = rng.normal(size=(3, 32))
    packed, absmax = nf4_base(w)
    assert packed.dtype == np.uint8 and packed.size == w.size // 2 and absmax.size == w.size // 64
    base = nf4_weight(packed, absmax, w.shape)
    assert np.abs(base - w).max() <= 0.5 * absmax.max()  # within half the widest NF4 gap
    y = qlora_linear(x, packed, absmax, w.shape, a, b, alpha=8.0)
    np.testing.assert_allclose(y, lora_linear(x, base, a, b, 8.0)["y"], rtol=1e-13)
    merged = qlora_merged_weight(packed, absmax, w.shape, a, b, alpha=8.0)
    np.testing.assert_allclose(x @ merged.T, y, rtol=1e-11, atol=1e-12)
    requantized = nf4_weight(*nf4_base(merged), w.shape)
    assert np.abs(requantized - merged).max() > 1e-3  # lossy: merge into NF4 is not exact


# ----------------------------------------------------------------------------- peft

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
INTERNAL = {"q_proj": "wq", "k_proj": "wk", "v_proj": "wv", "o_proj": "wo",
            "gate_proj": "w_gate", "up_proj": "w_up", "down_proj": "w_down"}


@pytest.mark.crosscheck
def test_lora_merged_and_unmerged_match_peft_on_a_tiny_llama(tmp_path):
    """peft's LoRA (r 4, alpha 8, dropout 0.1, every projection of a tiny Llama, B trained
    away from 0): llmref's model with LoRALinear layers gives peft's logits in eval mode
    (dropout off), and after merging gives peft's merge_and_unload() logits and weights."""
    torch = pytest.importorskip("torch", reason="the crosscheck extra (torch) is not installed")
    transformers = pytest.importorskip("transformers", reason="the crosscheck extra is not installed")
    peft = pytest.importorskip("peft", reason="peft is not installed (add it to the crosscheck extra)")
    raw = TINY_CONFIGS["tiny_llama"]
    c = load_config(raw)
    weights = init_weights(c, np.random.default_rng(4))
    (tmp_path / "model.safetensors").write_bytes(dumps(to_checkpoint(c, weights), {"format": "pt"}))
    (tmp_path / "config.json").write_text(json.dumps(raw))
    model = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float64)
    config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=list(TARGETS))
    tuned = peft.get_peft_model(model, config)
    torch.manual_seed(5)
    with torch.no_grad():
        for name, param in tuned.named_parameters():
            if "lora_B" in name:  # peft initialises B to 0: an untrained adapter changes nothing
                param.normal_(0.0, 0.5)
    tuned.eval()
    adapters = {}
    for name, param in tuned.named_parameters():
        if "lora_A" in name or "lora_B" in name:
            layer, proj = name.split(".layers.")[1].split(".")[0], name.split(".")[-4]
            adapters.setdefault((int(layer), proj), {})["a" if "lora_A" in name else "b"] = \
                param.detach().numpy().copy()
    assert len(adapters) == c.num_layers * len(TARGETS)
    layers = {f"layers.{i}.{INTERNAL[p]}": LoRALinear(weights[f"layers.{i}.{INTERNAL[p]}"], ab["a"],
                                                      ab["b"], alpha=8.0, dropout=0.1)
              for (i, p), ab in adapters.items()}
    ids = np.random.default_rng(6).integers(0, c.vocab_size, size=(2, 7))
    with torch.no_grad():
        theirs = tuned(torch.tensor(ids)).logits.numpy()
    ours = decoder_forward(c, {**weights, **layers}, ids)
    scale = np.abs(theirs).max()
    # transformers computes RoPE angles in float32 even in a float64 model: 1e-6 of the scale
    np.testing.assert_allclose(ours, theirs, atol=1e-6 * scale, rtol=0)
    assert np.abs(ours - decoder_forward(c, weights, ids)).max() > 0.1 * scale  # the adapter matters
    for layer in layers.values():
        layer.merge()
    merged_model = tuned.merge_and_unload()
    with torch.no_grad():
        merged_theirs = merged_model(torch.tensor(ids)).logits.numpy()
    merged_ours = decoder_forward(c, {**weights, **{k: v.weight for k, v in layers.items()}}, ids)
    np.testing.assert_allclose(merged_ours, merged_theirs, atol=1e-6 * scale, rtol=0)
    np.testing.assert_allclose(merged_ours, ours, atol=1e-12 * scale, rtol=0)
    state = merged_model.state_dict()
    for (i, p), _ in adapters.items():
        block = "self_attn" if p in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
        hf_name = f"model.layers.{i}.{block}.{p}.weight"
        np.testing.assert_allclose(layers[f"layers.{i}.{INTERNAL[p]}"].weight, state[hf_name].numpy(),
                                   rtol=1e-13, atol=1e-15)
