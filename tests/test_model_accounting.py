"""Parameter, weight-memory and KV-cache accounting: the published totals reproduced exactly,
the seed's Gemma-7B arithmetic and memory table, agreement with the tensor layout and with
transformers' own parameter count, and `llmref model info`."""
import json

import numpy as np
import pytest

from llmref.errors import InputError
from llmref.model_info import info, main
from llmref.ref.model import reference
from llmref.ref.model_accounting import PUBLISHED_CONFIGS, PUBLISHED_TOTALS, kv_cache_bytes, \
    parameter_counts, seed_estimate, weight_bytes
from llmref.ref.model_config import TINY_CONFIGS, flat_size, init_weights, tiny_config


@pytest.mark.parametrize("name", ["gemma-7b", "llama-2-7b", "llama-3-8b", "mistral-7b",
                                  "mixtral-8x7b"])
def test_published_totals_are_reproduced_exactly(name):
    assert parameter_counts(name)["total"] == PUBLISHED_TOTALS[name]["total"]


def test_gemma_7b_per_part_arithmetic_of_the_seed():
    """V 256000, H 3072, 28 layers, 16 heads of 256, MLP 24576, tied: per layer attention
    50,331,648 + MLP 226,492,416 + norms 6,144 = 276,830,208; embedding 786,432,000;
    total 8,537,680,896 (8.54 B), non-embedding 7,751,248,896 (the Gemma paper's), 9.32 B
    if the head were untied."""
    p = parameter_counts("gemma-7b")
    layer = p["per_layer"]["first"]
    assert (layer["attention"], layer["mlp"], layer["norms"]) == (50_331_648, 226_492_416, 6_144)
    assert sum(layer.values()) == 276_830_208
    assert p["parts"]["embedding"] == 786_432_000 and p["parts"]["head"] == 0 and p["tied"]
    assert p["total"] == 786_432_000 + 28 * 276_830_208 + 3072 == 8_537_680_896
    assert p["non_embedding"] == PUBLISHED_TOTALS["gemma-7b"]["non_embedding"] == 7_751_248_896
    assert p["total_untied"] == 9_324_112_896
    assert (round(p["total"] / 1e9, 2), round(p["total_untied"] / 1e9, 2)) == (8.54, 9.32)


def test_mixtral_total_and_active():
    p = parameter_counts("mixtral-8x7b")
    assert p["total"] == 46_702_792_704
    expert = 3 * 4096 * 14336
    assert p["active"] == p["total"] - 32 * 6 * expert == 12_879_925_248
    assert f"{p['active'] / 1e9:.1f}B" == PUBLISHED_TOTALS["mixtral-8x7b"]["active_rounded"]


def test_deepseek_v3_total_and_active():
    """Published as 671B total and 37B activated (rounded). The config gives 671,026,404,352
    (the 14,848 e_score_correction_bias entries are buffers and the MTP module is excluded);
    per token the 8 routed experts of 256 plus the shared one: 37,552,282,624 with the
    input embedding, 36,625,603,584 without it -- the published 37B is the latter rounded."""
    p = parameter_counts("deepseek-v3")
    assert p["total"] == 671_026_404_352 and p["buffers"] == 58 * 256
    assert f"{p['total'] / 1e9:.0f}B" == PUBLISHED_TOTALS["deepseek-v3"]["total_rounded"]
    assert p["active"] == 37_552_282_624
    without_input_embedding = p["active"] - p["parts"]["embedding"]  # a row gather, no compute
    assert without_input_embedding == 36_625_603_584
    assert f"{without_input_embedding / 1e9:.0f}B" == PUBLISHED_TOTALS["deepseek-v3"]["active_rounded"]


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_counts_equal_the_layout_the_loader_reads(name):
    c = tiny_config(name)
    p = parameter_counts(c)
    assert p["total"] + p["buffers"] == flat_size(c)
    assert p["total"] + p["buffers"] == sum(v.size for v in init_weights(c, np.random.default_rng(0)).values())


@pytest.mark.crosscheck
@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gemma", "tiny_mixtral", "tiny_deepseek_v3", "tiny_bert"])
def test_counts_equal_transformers_num_parameters(name):
    transformers = pytest.importorskip("transformers", reason="the crosscheck extra is not installed")
    raw = TINY_CONFIGS[name]
    config = transformers.AutoConfig.for_model(raw["model_type"],
                                               **{k: v for k, v in raw.items() if k != "model_type"})
    cls = transformers.BertModel if name == "tiny_bert" else transformers.AutoModelForCausalLM
    model = cls(config, add_pooling_layer=False) if name == "tiny_bert" else cls.from_config(config)
    assert parameter_counts(tiny_config(name))["total"] == model.num_parameters()


def test_weight_bytes_per_plan_beside_the_seed_estimate():
    p = parameter_counts("llama-2-7b")["total"]
    rows = {r["plan"]: r for r in weight_bytes("llama-2-7b")}
    assert rows["fp32"]["bytes"] == 4 * p and rows["bf16"]["bytes"] == 2 * p
    for plan, bits in (("fp32", 32), ("bf16", 16), ("int8-g128", 8), ("int4-g128", 4)):
        assert rows[plan]["estimate"] == pytest.approx(p * 4 * 1.2 / (32 / bits), rel=1e-15)
    # int4: the block weights at 4 bits + an fp16 scale and a 4-bit zero per 128, the rest 16-bit
    c = parameter_counts("llama-2-7b")
    blocks = c["parts"]["attention"] + c["parts"]["mlp"]
    rest = p - blocks
    assert rows["int4-g128"]["bytes"] == blocks // 2 + 2 * blocks // 128 + blocks // 128 // 2 + 2 * rest


def test_seed_memory_table_matches_the_quant_memory_component():
    """The seed's table (1.5B .. 70B at 4, 8, 16 bits) from seed_estimate equals quant_memory's
    estimate; 7B at 4 bits is 4.2 GB by the rule, 3.64 GB of codes, scales and zeros exactly."""
    sizes = np.repeat(np.array([1.5e9, 7e9, 9e9, 40e9, 70e9], dtype=np.int64), 3)
    bits = np.tile(np.array([4, 8, 16]), 5)
    out = reference("quant_memory")(numel=sizes, bits=bits, group_size=128, zero_points=True)
    estimates = out[4] if isinstance(out, tuple) else out["estimate_bytes"]
    np.testing.assert_allclose([seed_estimate(int(n), int(b)) for n, b in zip(sizes, bits)],
                               estimates, rtol=1e-15)
    assert seed_estimate(7_000_000_000, 4) == pytest.approx(4.2e9)


def test_kv_cache_bytes_per_token():
    assert kv_cache_bytes("llama-2-7b")["bytes_per_token"] == 2 * 32 * 32 * 128 * 2 == 524_288
    assert kv_cache_bytes("llama-3-8b")["bytes_per_token"] == 131_072
    assert kv_cache_bytes("llama-3-8b")["kind"] == "GQA"
    assert kv_cache_bytes("gemma-7b")["bytes_per_token"] == 2 * 28 * 16 * 256 * 2
    v3 = kv_cache_bytes("deepseek-v3")
    assert (v3["kind"], v3["values_per_token_per_layer"], v3["bytes_per_token"]) == ("MLA", 576, 61 * 576 * 2)
    assert v3["uncompressed_bytes_per_token"] == 61 * 128 * (128 + 64 + 128) * 2
    assert kv_cache_bytes(tiny_config("tiny_gemma"))["kind"] == "MQA"
    assert kv_cache_bytes("mistral-7b", bytes_per_value=1)["bytes_per_token"] == 65_536
    with pytest.raises(InputError, match="^config: an encoder keeps no KV cache"):
        kv_cache_bytes(tiny_config("tiny_bert"))


# ----------------------------------------------------------------------------- model info

@pytest.mark.parametrize("name", list(PUBLISHED_CONFIGS))
def test_model_info_json_reproduces_the_totals(name, capsys):
    assert main([name, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parameters"]["total"] == parameter_counts(name)["total"]
    if "total" in PUBLISHED_TOTALS[name]:
        assert data["parameters"]["total"] == PUBLISHED_TOTALS[name]["total"]
    assert [r["plan"] for r in data["memory"]] == ["fp32", "bf16", "int8-g128", "int4-g128"]


def test_model_info_table_shows_the_parts_tying_and_the_memory_rule(capsys):
    assert main(["gemma-7b"]) == 0
    out = capsys.readouterr().out
    for text in ("8,537,680,896", "7,751,248,896", "9,324,112,896", "50,331,648", "226,492,416",
                 "M = P x 4 B x 1.2 / (32 / Q)", "40.98 GB", "458,752"):
        assert text in out, text


def test_model_info_reads_a_config_file_and_reports_bad_ones(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(PUBLISHED_CONFIGS["llama-3-8b"]))
    assert main([str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"]["total"] == 8_030_261_248
    path.write_text(json.dumps({**PUBLISHED_CONFIGS["llama-3-8b"], "num_key_value_heads": 7}))
    assert main([str(path)]) == 2
    assert "num_key_value_heads: 7 does not divide" in capsys.readouterr().err
    assert info(tiny_config("tiny_bert"))["kv_cache"] is None
