"""Parameter, weight-memory and KV-cache accounting of a model config, and the configs of
published models it reproduces (research notes sec. 9; `llmref model info`).

Parameters are counted from the same tensor layout the safetensors loader uses
(llmref.ref.model_config.layout), one part per tensor:

  embedding       V*D (BERT: word + position + token-type tables)
  attention       q, k, v, o projections (MLA: q_a, q_b, kv_a, kv_b, o; BERT: with biases)
  mlp             dense gated MLP: gate, up, down (3*D*F); BERT: two dense layers + biases
  experts         routed experts, E per MoE layer, 3*D*F_moe each
  shared_experts  DeepSeek's always-on experts
  router          the MoE gate (E*D per MoE layer)
  norms           every norm weight (and bias): 2 per layer + the final one, MLA's q/kv norms
  head            V*D when untied; 0 when tied (the tied head is the embedding, counted once)

Buffers that checkpoints store but no optimiser trains (DeepSeek's e_score_correction_bias,
a buffer in transformers) are reported apart and not counted; neither are RoPE tables or
DeepSeek-V3's multi-token-prediction module (num_nextn_predict_layers), which is not part
of the 671B main model.
"""
import math

import numpy as np

from llmref.errors import InputError
from llmref.ref.model import reference
from llmref.ref.model_config import ModelConfig, layout, load_config

PARTS = ("embedding", "attention", "mlp", "experts", "shared_experts", "router", "norms", "head")

# config.json of published checkpoints (the fields the accounting reads, as on the Hugging Face
# Hub: google/gemma-7b, meta-llama/Llama-2-7b-hf, meta-llama/Meta-Llama-3-8B,
# mistralai/Mistral-7B-v0.1, mistralai/Mixtral-8x7B-v0.1, deepseek-ai/DeepSeek-V3).
PUBLISHED_CONFIGS = {
    "gemma-7b": {
        "architectures": ["GemmaForCausalLM"], "model_type": "gemma", "vocab_size": 256000,
        "hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256,
        "hidden_act": "gelu", "max_position_embeddings": 8192, "rms_norm_eps": 1e-06,
        "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False,
        "torch_dtype": "bfloat16"},
    "llama-2-7b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu",
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "tie_word_embeddings": False, "torch_dtype": "float16"},
    "llama-3-8b": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_act": "silu",
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
        "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
    "mistral-7b": {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 32000,
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_act": "silu",
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
        "sliding_window": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
    "mixtral-8x7b": {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": 32000,
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
        "num_experts_per_tok": 2, "hidden_act": "silu", "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": None,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
    "deepseek-v3": {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
        "moe_intermediate_size": 2048, "num_hidden_layers": 61, "first_k_dense_replace": 3,
        "num_attention_heads": 128, "num_key_value_heads": 128, "n_routed_experts": 256,
        "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
        "routed_scaling_factor": 2.5, "norm_topk_prob": True, "scoring_func": "sigmoid",
        "topk_method": "noaux_tc", "q_lora_rank": 1536, "kv_lora_rank": 512,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
        "num_nextn_predict_layers": 1, "hidden_act": "silu", "max_position_embeddings": 163840,
        "rms_norm_eps": 1e-06, "rope_theta": 10000,
        "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                         "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
        "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
}

# Published parameter counts, with where each is stated. DeepSeek publishes rounded figures
# only; the others are exact counts.
PUBLISHED_TOTALS = {
    "gemma-7b": {"total": 8_537_680_896, "non_embedding": 7_751_248_896,
                 "source": "Gemma report Table 2 (non-embedding 7,751,248,896); ollama #5254 "
                           "and HF google/gemma-7b discussion 34 (8,537,680,896)"},
    "llama-2-7b": {"total": 6_738_415_616, "source": "HF meta-llama/Llama-2-7b-hf safetensors "
                                                     "parameter count (6.74B)"},
    "llama-3-8b": {"total": 8_030_261_248, "source": "HF meta-llama/Meta-Llama-3-8B (8.03B)"},
    "mistral-7b": {"total": 7_241_732_096, "source": "HF mistralai/Mistral-7B-v0.1 (7.24B)"},
    "mixtral-8x7b": {"total": 46_702_792_704, "active_rounded": "12.9B",
                     "source": "Mixtral of Experts (2024), sec. 1: 47B total (46.7B on the HF "
                               "model card), 13B active (12.9B in Mistral's announcement)"},
    "deepseek-v3": {"total_rounded": "671B", "active_rounded": "37B",
                    "source": "DeepSeek-V3 Technical Report, abstract: 671B total, 37B "
                              "activated per token (the 14B MTP module excluded)"},
}

# Weight-memory plans: every linear weight inside the blocks at `bits` (groups of 128 with
# fp16 scales and packed zero-points, as quant_memory counts), embeddings, head, router and
# norms kept at 16 bits; fp32 and bf16 store everything at that width.
PLANS = (("fp32", 32), ("bf16", 16), ("int8-g128", 8), ("int4-g128", 4))
QUANTIZED_PARTS = ("attention", "mlp", "experts", "shared_experts")


def as_config(config) -> ModelConfig:
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, str) and config in PUBLISHED_CONFIGS:
        return load_config(PUBLISHED_CONFIGS[config])
    return load_config(config)


def parameter_counts(config) -> dict:
    """{'parts': {part: count}, 'total', 'non_embedding', 'total_untied' (the head counted
    separately), 'tied', 'active' (per token: the routed experts scaled by top_k / E),
    'buffers', 'per_layer': {part: count} of layer 0 and of the last layer}."""
    c = as_config(config)
    parts = dict.fromkeys(PARTS + ("buffer",), 0)
    first, last = dict.fromkeys(PARTS, 0), dict.fromkeys(PARTS, 0)
    for name, _, shape, part in layout(c):
        n = math.prod(shape)
        parts[part] += n
        for layer, into in ((0, first), (c.num_layers - 1, last)):
            if name.startswith(f"layers.{layer}.") and part != "buffer":
                into[part] += n
    buffers = parts.pop("buffer")
    total = sum(parts.values())
    head_if_untied = c.vocab_size * c.hidden_size if c.tie_embeddings else 0
    active = total
    if c.is_moe:  # E experts per MoE layer, top_k of them per token: E * e * (top_k / E)
        active = total - parts["experts"] + parts["experts"] // c.num_experts * c.top_k
    return {"parts": parts, "total": total, "non_embedding": total - parts["embedding"],
            "total_untied": total + head_if_untied, "tied": c.tie_embeddings, "active": active,
            "buffers": buffers, "per_layer": {"first": first, "last": last}}


def seed_estimate(params: int, bits: int) -> float:
    """The seed's rule of thumb M = P x 4 B x 1.2 / (32 / Q) (fp32 bytes scaled to Q bits,
    +20 % runtime overhead); not a byte count of the weights."""
    return params * 4 * 1.2 / (32 / bits)


def weight_bytes(config, group_size=128) -> list:
    """Per plan of PLANS: {'plan', 'bits', 'bytes' (exact: codes + scales + zero-points,
    quant_memory's accounting), 'estimate' (seed_estimate of the total)}."""
    c = as_config(config)
    rows = [(math.prod(shape), part) for _, _, shape, part in layout(c) if part != "buffer"]
    numel = np.array([n for n, _ in rows], dtype=np.int64)
    quantizable = np.array([part in QUANTIZED_PARTS and n > 1 for n, part in rows]) & \
        np.array([len(shape) == 2 for _, _, shape, part in layout(c) if part != "buffer"])
    total = int(numel.sum())
    out = []
    for plan, bits in PLANS:
        if bits >= 16:
            exact = total * bits // 8
        else:
            widths = np.where(quantizable, bits, 16)
            counted = reference("quant_memory")(numel=numel, bits=widths, group_size=group_size,
                                                zero_points=True)
            exact = int(np.sum(counted[3]))  # total_bytes per tensor
        out.append({"plan": plan, "bits": bits, "bytes": exact,
                    "estimate": seed_estimate(total, bits)})
    return out


def kv_cache_bytes(config, bytes_per_value=2) -> dict:
    """KV-cache size per token: MHA / GQA / MQA store K and V of every KV head in every
    layer, 2 L Hkv d values; MLA stores the latent and the shared RoPE key, L (Rkv + d_rope)
    values ('uncompressed' gives the per-head keys and values it replaces,
    L H (d_nope + d_rope + d_v)). BERT has no cache."""
    c = as_config(config)
    if c.family == "bert":
        raise InputError("config: an encoder keeps no KV cache")
    if c.is_mla:
        kind = "MLA"
        per_layer = c.kv_lora_rank + c.qk_rope_head_dim
        uncompressed = c.num_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim)
    else:
        kind = "MHA" if c.num_kv_heads == c.num_heads else "MQA" if c.num_kv_heads == 1 else "GQA"
        per_layer = uncompressed = 2 * c.num_kv_heads * c.head_dim
    return {"kind": kind, "values_per_token_per_layer": per_layer,
            "values_per_token": per_layer * c.num_layers,
            "bytes_per_token": per_layer * c.num_layers * bytes_per_value,
            "uncompressed_bytes_per_token": uncompressed * c.num_layers * bytes_per_value,
            "bytes_per_value": bytes_per_value, "sliding_window": c.sliding_window}
