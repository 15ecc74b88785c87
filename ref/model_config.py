"""Model configurations, the transformers weight-name map, and loading weights from
safetensors (specs/model_decoder.yaml, model_moe.yaml, model_encoder.yaml).

A config is read from a transformers-style config.json (a dict). Five families are built:

  llama        Llama / Mistral: RMSNorm, rotate-half RoPE, GQA, SwiGLU, untied head;
               Mistral's sliding_window (W keys including the current one) when set
  gemma        Gemma: embedding x sqrt(hidden) (rounded to the activation dtype), RMSNorm
               with (1 + w), GeGLU with the tanh GELU (whatever `hidden_act` says: HF PR
               #29402), MQA/MHA, head_dim independent of hidden/heads, tied head
  mixtral      Llama attention + a sparse MoE: softmax -> top-k -> renormalise, SwiGLU experts
  deepseek_v3  MLA attention (interleaved RoPE on the decoupled key) + the first
               `first_k_dense_replace` layers dense, then MoE with sigmoid routing,
               e_score_correction_bias for selection only, group-limited top-k and shared
               experts
  bert         BERT encoder: learned absolute positions and token types, post-LayerNorm,
               exact GELU, biases everywhere

Weights live in a dict keyed by the internal names of NAME_MAP; linear weights are stored
(out, in), as nn.Linear does, and applied as x @ W^T. The name map (internal -> transformers
checkpoint name, `{i}` a layer, `{e}` an expert) is the documented correspondence used to
load and save safetensors files: e.g. "layers.{i}.wq" <-> "model.layers.{i}.self_attn.q_proj.weight",
Mixtral's experts "layers.{i}.experts.{e}.w_gate" <-> "...block_sparse_moe.experts.{e}.w1.weight"
(w1 = gate, w3 = up, w2 = down). A tied model has no "lm_head" entry: its head is the
embedding matrix (a checkpoint may omit lm_head.weight or store a copy equal to it).
"""
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from llmref.errors import InputError
from llmref.tensorfile import TensorFileError, loads, read_bytes

FAMILIES = {"llama": "llama", "mistral": "llama", "gemma": "gemma", "mixtral": "mixtral",
            "deepseek_v3": "deepseek_v3", "bert": "bert"}
MLA_NORM_EPS = 1e-6  # DeepSeek's q_a_layernorm / kv_a_layernorm (RMSNorm default, both codes)
# Every scaling keyword of the rope component, at its default (no scaling).
ROPE_DEFAULTS = {"partial_rotary_factor": 1.0, "rope_type": "default", "base": 10000.0,
                 "factor": 1.0, "original_max_position_embeddings": 4096, "low_freq_factor": 1.0,
                 "high_freq_factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.0,
                 "mscale_all_dim": 0.0}


@dataclass(frozen=True)
class ModelConfig:
    family: str
    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    max_position: int
    norm_eps: float
    tie_embeddings: bool
    activation: str  # silu | gelu_tanh | gelu
    rope: dict = field(default_factory=dict)  # keyword arguments of the rope component
    sliding_window: int = 0  # 0: none
    # mixture of experts
    num_experts: int = 0
    top_k: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    first_dense_layers: int = 0
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    # multi-head latent attention
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # encoder
    type_vocab_size: int = 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    def moe_layer(self, i: int) -> bool:
        """Layer i has an MoE feed-forward (DeepSeek keeps the first layers dense)."""
        return self.is_moe and i >= self.first_dense_layers

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ----------------------------------------------------------------------------- reading configs

def _get(raw, key, kind, default=None, low=None):
    """raw[key] checked: a missing key takes `default` (None default: required)."""
    value = raw.get(key, default) if isinstance(raw, dict) else None
    if value is None:
        if default is None:
            raise InputError(f"{key}: required by a {raw.get('model_type')!r} config")
        value = default
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
                isinstance(value, float) and value.is_integer()):
            raise InputError(f"{key}: expected an integer, got {value!r}")
        value = int(value)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{key}: expected a finite number, got {value!r}")
        value = float(value)
    elif kind is bool and not isinstance(value, bool):
        raise InputError(f"{key}: expected true or false, got {value!r}")
    if low is not None and value < low:
        raise InputError(f"{key}: must be >= {low}, got {value}")
    return value


def rope_params(raw: dict) -> dict:
    """The rope component's scaling keywords from `rope_parameters` (transformers >= 5) or
    `rope_theta` + `rope_scaling` (earlier config.json files; 'type' is the old 'rope_type')."""
    scaling = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    base = scaling.pop("rope_theta", None) or raw.get("rope_theta") or 10000.0
    rope_type = scaling.pop("rope_type", None) or scaling.pop("type", None) or "default"
    out = dict(ROPE_DEFAULTS, rope_type=rope_type, base=float(base))
    for key in ROPE_DEFAULTS:
        if key not in ("rope_type", "base") and scaling.get(key) is not None:
            out[key] = float(scaling[key]) if key != "original_max_position_embeddings" \
                else int(scaling[key])
    if rope_type not in ("default", "linear", "dynamic", "yarn", "llama3"):
        raise InputError(f"rope_parameters: rope_type {rope_type!r} is not supported")
    return out


def config_from_dict(raw) -> ModelConfig:
    """A ModelConfig from a transformers config.json dict; every inconsistency is an
    InputError naming the field."""
    if not isinstance(raw, dict):
        raise InputError(f"config: expected a JSON object, got {type(raw).__name__}")
    model_type = raw.get("model_type")
    if model_type not in FAMILIES:
        raise InputError(f"model_type: {model_type!r} is not one of {sorted(FAMILIES)}")
    family = FAMILIES[model_type]
    hidden = _get(raw, "hidden_size", int, low=1)
    heads = _get(raw, "num_attention_heads", int, low=1)
    kv_heads = _get(raw, "num_key_value_heads", int, heads, low=1)
    if raw.get("head_dim") is None and family != "deepseek_v3" and hidden % heads:
        raise InputError(f"num_attention_heads: {heads} does not divide hidden_size {hidden} "
                         "and the config gives no head_dim")
    head_dim = _get(raw, "head_dim", int, hidden // heads, low=1) if family != "deepseek_v3" else 0
    if heads % kv_heads:
        raise InputError(f"num_key_value_heads: {kv_heads} does not divide "
                         f"num_attention_heads {heads} (each KV head serves a whole group)")
    common = dict(
        family=family, model_type=model_type, vocab_size=_get(raw, "vocab_size", int, low=1),
        hidden_size=hidden, num_layers=_get(raw, "num_hidden_layers", int, low=1),
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
        intermediate_size=_get(raw, "intermediate_size", int, low=1),
        max_position=_get(raw, "max_position_embeddings", int, low=1))
    if family == "bert":
        act = raw.get("hidden_act", "gelu")
        if act != "gelu":
            raise InputError(f"hidden_act: a BERT encoder here uses the exact 'gelu', got {act!r}")
        return ModelConfig(**common, norm_eps=_get(raw, "layer_norm_eps", float, 1e-12, low=0),
                           tie_embeddings=False, activation="gelu",
                           type_vocab_size=_get(raw, "type_vocab_size", int, 2, low=1))
    rope = rope_params(raw)
    extra = {}
    if family == "gemma":
        activation, tie = "gelu_tanh", _get(raw, "tie_word_embeddings", bool, True)
    else:
        act = raw.get("hidden_act", "silu")
        if act != "silu":
            raise InputError(f"hidden_act: {model_type} uses 'silu' (SwiGLU), got {act!r}")
        activation, tie = "silu", _get(raw, "tie_word_embeddings", bool, False)
    if family == "llama":
        extra["sliding_window"] = _get(raw, "sliding_window", int, 0, low=0)
    if family == "mixtral":
        extra.update(num_experts=_get(raw, "num_local_experts", int, low=1),
                     top_k=_get(raw, "num_experts_per_tok", int, low=1),
                     moe_intermediate_size=common["intermediate_size"])
    if family == "deepseek_v3":
        extra.update(
            num_experts=_get(raw, "n_routed_experts", int, low=1),
            top_k=_get(raw, "num_experts_per_tok", int, low=1),
            moe_intermediate_size=_get(raw, "moe_intermediate_size", int, low=1),
            num_shared_experts=_get(raw, "n_shared_experts", int, 0, low=0),
            first_dense_layers=_get(raw, "first_k_dense_replace", int, 0, low=0),
            n_group=_get(raw, "n_group", int, 1, low=1),
            topk_group=_get(raw, "topk_group", int, 1, low=1),
            routed_scaling_factor=_get(raw, "routed_scaling_factor", float, 1.0, low=0),
            q_lora_rank=_get(raw, "q_lora_rank", int, 0, low=0),
            kv_lora_rank=_get(raw, "kv_lora_rank", int, low=1),
            qk_nope_head_dim=_get(raw, "qk_nope_head_dim", int, low=1),
            qk_rope_head_dim=_get(raw, "qk_rope_head_dim", int, low=2),
            v_head_dim=_get(raw, "v_head_dim", int, low=1))
        if not _get(raw, "norm_topk_prob", bool, True):
            raise InputError("norm_topk_prob: DeepSeek-V3 routing renormalises the top-k "
                             "weights (true); false is not supported")
        if not _get(raw, "rope_interleave", bool, True):
            raise InputError("rope_interleave: the mla component rotates interleaved pairs "
                             "(DeepSeek's own layout, HF rope_interleave=true)")
    config = ModelConfig(**common, norm_eps=_get(raw, "rms_norm_eps", float, 1e-6, low=0),
                         tie_embeddings=tie, activation=activation, rope=rope, **extra)
    check_config(config)
    return config


def check_config(c: ModelConfig):
    """Cross-field consistency: every failure names the field to fix."""
    if c.family != "deepseek_v3" and c.head_dim % 2:
        raise InputError(f"head_dim: {c.head_dim} is odd; rotate-half RoPE pairs channels")
    if c.family == "deepseek_v3" and c.qk_rope_head_dim % 2:
        raise InputError(f"qk_rope_head_dim: {c.qk_rope_head_dim} is odd; RoPE pairs channels")
    if c.is_moe:
        if c.top_k > c.num_experts:
            raise InputError(f"num_experts_per_tok: {c.top_k} exceeds the {c.num_experts} experts")
        if c.num_experts % c.n_group:
            raise InputError(f"n_group: {c.n_group} does not divide the {c.num_experts} experts")
        if c.topk_group > c.n_group:
            raise InputError(f"topk_group: {c.topk_group} exceeds n_group {c.n_group}")
        if c.topk_group * (c.num_experts // c.n_group) < c.top_k:
            raise InputError(f"topk_group: {c.topk_group} groups hold fewer than "
                             f"num_experts_per_tok={c.top_k} experts")
        if c.first_dense_layers > c.num_layers:
            raise InputError(f"first_k_dense_replace: {c.first_dense_layers} exceeds "
                             f"num_hidden_layers {c.num_layers}")
    if c.family == "deepseek_v3" and (c.rope["rope_type"] not in ("default", "yarn") or (
            c.rope["beta_fast"], c.rope["beta_slow"]) != (32.0, 1.0)):
        raise InputError("rope_parameters: MLA rotates with default or YaRN frequencies "
                         "(beta_fast 32, beta_slow 1), as DeepSeek's own code")
    if c.family == "deepseek_v3" and c.q_lora_rank == 0:
        raise InputError("q_lora_rank: 0 (an uncompressed query, DeepSeek-V2-Lite) is not "
                         "built by the mla component; give the query rank")


def load_config(source) -> ModelConfig:
    """A ModelConfig from a config.json path (or a folder holding one), a JSON text, or a dict."""
    if isinstance(source, dict):
        return config_from_dict(source)
    text = str(source)
    if text.lstrip().startswith("{"):
        return config_from_dict(parse_json("config", text))
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
    try:
        return config_from_dict(parse_json("config", path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise InputError(f"config: cannot read {path} ({exc.strerror or exc})") from None


def parse_json(name, text):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{name}: not valid JSON ({exc})") from None


# ----------------------------------------------------------------------------- the weights

def hf_prefix(c: ModelConfig) -> str:
    return "" if c.family == "bert" else "model."


def name_map(c: ModelConfig) -> dict:
    """{internal name: transformers checkpoint name} for every tensor of the model."""
    return {name: hf for name, hf, _, _ in layout(c)}


def weight_shapes(c: ModelConfig) -> dict:
    """{internal name: shape}, in the canonical (flattening) order."""
    return {name: shape for name, _, shape, _ in layout(c)}


def layout(c: ModelConfig) -> list:
    """(internal name, transformers name, shape, part) of every tensor, in canonical order.
    part: embedding, attention, mlp, experts, shared_experts, router, norms, head, buffer
    (a tensor of the checkpoint that is not a trained parameter)."""
    rows = []

    def add(name, hf, shape, part):
        rows.append((name, hf, tuple(int(s) for s in shape), part))

    d, v = c.hidden_size, c.vocab_size
    if c.family == "bert":
        return _bert_layout(c, add, rows)
    add("embed", "model.embed_tokens.weight", (v, d), "embedding")
    for i in range(c.num_layers):
        p = f"model.layers.{i}."
        add(f"layers.{i}.attn_norm", p + "input_layernorm.weight", (d,), "norms")
        if c.is_mla:
            _mla_layout(c, i, p, add)
        else:
            hq, hkv, hd = c.num_heads, c.num_kv_heads, c.head_dim
            add(f"layers.{i}.wq", p + "self_attn.q_proj.weight", (hq * hd, d), "attention")
            add(f"layers.{i}.wk", p + "self_attn.k_proj.weight", (hkv * hd, d), "attention")
            add(f"layers.{i}.wv", p + "self_attn.v_proj.weight", (hkv * hd, d), "attention")
            add(f"layers.{i}.wo", p + "self_attn.o_proj.weight", (d, hq * hd), "attention")
        add(f"layers.{i}.mlp_norm", p + "post_attention_layernorm.weight", (d,), "norms")
        if c.moe_layer(i):
            _moe_layout(c, i, p, add)
        else:
            f = c.intermediate_size
            add(f"layers.{i}.w_gate", p + "mlp.gate_proj.weight", (f, d), "mlp")
            add(f"layers.{i}.w_up", p + "mlp.up_proj.weight", (f, d), "mlp")
            add(f"layers.{i}.w_down", p + "mlp.down_proj.weight", (d, f), "mlp")
    add("final_norm", "model.norm.weight", (d,), "norms")
    if not c.tie_embeddings:
        add("lm_head", "lm_head.weight", (v, d), "head")
    return rows


def _mla_layout(c, i, p, add):
    d, h = c.hidden_size, c.num_heads
    a = p + "self_attn."
    add(f"layers.{i}.wq_a", a + "q_a_proj.weight", (c.q_lora_rank, d), "attention")
    add(f"layers.{i}.q_norm", a + "q_a_layernorm.weight", (c.q_lora_rank,), "norms")
    add(f"layers.{i}.wq_b", a + "q_b_proj.weight",
        (h * (c.qk_nope_head_dim + c.qk_rope_head_dim), c.q_lora_rank), "attention")
    add(f"layers.{i}.wkv_a", a + "kv_a_proj_with_mqa.weight",
        (c.kv_lora_rank + c.qk_rope_head_dim, d), "attention")
    add(f"layers.{i}.kv_norm", a + "kv_a_layernorm.weight", (c.kv_lora_rank,), "norms")
    add(f"layers.{i}.wkv_b", a + "kv_b_proj.weight",
        (h * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank), "attention")
    add(f"layers.{i}.wo", a + "o_proj.weight", (d, h * c.v_head_dim), "attention")


def _moe_layout(c, i, p, add):
    d, f, n = c.hidden_size, c.moe_intermediate_size, c.num_experts
    if c.family == "mixtral":
        m = p + "block_sparse_moe."
        add(f"layers.{i}.router", m + "gate.weight", (n, d), "router")
        for e in range(n):
            add(f"layers.{i}.experts.{e}.w_gate", m + f"experts.{e}.w1.weight", (f, d), "experts")
            add(f"layers.{i}.experts.{e}.w_up", m + f"experts.{e}.w3.weight", (f, d), "experts")
            add(f"layers.{i}.experts.{e}.w_down", m + f"experts.{e}.w2.weight", (d, f), "experts")
        return
    m = p + "mlp."
    add(f"layers.{i}.router", m + "gate.weight", (n, d), "router")
    add(f"layers.{i}.router_bias", m + "gate.e_score_correction_bias", (n,), "buffer")
    for e in range(n):
        for w, hf, shape in (("w_gate", "gate_proj", (f, d)), ("w_up", "up_proj", (f, d)),
                             ("w_down", "down_proj", (d, f))):
            add(f"layers.{i}.experts.{e}.{w}", m + f"experts.{e}.{hf}.weight", shape, "experts")
    if c.num_shared_experts:
        s = f * c.num_shared_experts
        for w, hf, shape in (("w_gate", "gate_proj", (s, d)), ("w_up", "up_proj", (s, d)),
                             ("w_down", "down_proj", (d, s))):
            add(f"layers.{i}.shared.{w}", m + f"shared_experts.{hf}.weight", shape,
                "shared_experts")


def _bert_layout(c, add, rows):
    d, f = c.hidden_size, c.intermediate_size
    e = "embeddings."
    add("embed", e + "word_embeddings.weight", (c.vocab_size, d), "embedding")
    add("pos_embed", e + "position_embeddings.weight", (c.max_position, d), "embedding")
    add("type_embed", e + "token_type_embeddings.weight", (c.type_vocab_size, d), "embedding")
    add("embed_norm.weight", e + "LayerNorm.weight", (d,), "norms")
    add("embed_norm.bias", e + "LayerNorm.bias", (d,), "norms")
    for i in range(c.num_layers):
        p, q = f"encoder.layer.{i}.", f"layers.{i}."
        for w, hf in (("wq", "attention.self.query"), ("wk", "attention.self.key"),
                      ("wv", "attention.self.value"), ("wo", "attention.output.dense")):
            add(q + w, p + hf + ".weight", (d, d), "attention")
            add(q + "b" + w[1], p + hf + ".bias", (d,), "attention")
        add(q + "attn_norm.weight", p + "attention.output.LayerNorm.weight", (d,), "norms")
        add(q + "attn_norm.bias", p + "attention.output.LayerNorm.bias", (d,), "norms")
        add(q + "w_in", p + "intermediate.dense.weight", (f, d), "mlp")
        add(q + "b_in", p + "intermediate.dense.bias", (f,), "mlp")
        add(q + "w_out", p + "output.dense.weight", (d, f), "mlp")
        add(q + "b_out", p + "output.dense.bias", (d,), "mlp")
        add(q + "mlp_norm.weight", p + "output.LayerNorm.weight", (d,), "norms")
        add(q + "mlp_norm.bias", p + "output.LayerNorm.bias", (d,), "norms")
    return rows


# Checkpoint tensors that are not weights of this model: BERT's pooler (mean pooling does
# not use it) and position-id buffers some checkpoints store.
IGNORED_SUFFIXES = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias",
                    "rotary_emb.inv_freq")


def flat_size(c: ModelConfig) -> int:
    return sum(math.prod(shape) for shape in weight_shapes(c).values())


def unflatten(c: ModelConfig, flat) -> dict:
    """{internal name: array} from the concatenation of every tensor in canonical order."""
    flat = np.asarray(flat)
    expected = flat_size(c)
    if flat.ndim != 1 or flat.size != expected:
        raise InputError(f"weights: has shape {flat.shape}, the config needs ({expected},) "
                         f"values ({len(weight_shapes(c))} tensors in canonical order)")
    out, offset = {}, 0
    for name, shape in weight_shapes(c).items():
        n = math.prod(shape)
        out[name] = flat[offset:offset + n].reshape(shape)
        offset += n
    return out


def flatten(c: ModelConfig, weights: dict) -> np.ndarray:
    """The inverse of unflatten (every tensor checked against its shape)."""
    check_weights(c, weights)
    return np.concatenate([np.asarray(weights[n]).reshape(-1) for n in weight_shapes(c)])


def check_weights(c: ModelConfig, weights: dict, where: str = "weights"):
    """Every tensor present with its expected shape, and nothing else."""
    shapes = weight_shapes(c)
    hf = name_map(c)
    for name, shape in shapes.items():
        if name not in weights:
            raise InputError(f"{where}: tensor {hf[name]!r} ({name}) is missing; "
                             f"expected shape {shape}")
        if tuple(np.shape(weights[name])) != shape:
            raise InputError(f"{where}: tensor {hf[name]!r} ({name}) has shape "
                             f"{tuple(np.shape(weights[name]))}, expected {shape}")
    extra = sorted(set(weights) - set(shapes))
    if extra:
        raise InputError(f"{where}: unexpected tensor {extra[0]!r} for this config")


def init_weights(c: ModelConfig, rng) -> dict:
    """Random weights for tiny test models: linear W ~ N(0, 1/fan_in) (activations stay O(1)),
    embeddings ~ N(0, 1) (Gemma: N(0, 1/D), its lookup is scaled by sqrt(D)), norm weights
    1 + N(0, 0.1^2) (Gemma's (1 + w): N(0, 0.1^2)), biases and DeepSeek's selection bias
    ~ N(0, 0.1^2)."""
    out = {}
    for name, _, shape, part in layout(c):
        if len(shape) == 2 and part == "embedding":  # Gemma multiplies its rows by sqrt(D)
            out[name] = rng.normal(scale=c.hidden_size ** -0.5 if c.family == "gemma" else 1.0,
                                   size=shape)
        elif len(shape) == 2:
            out[name] = rng.normal(scale=shape[1] ** -0.5, size=shape)
        elif part == "norms" and not name.endswith("bias"):
            offset = 0.0 if c.family == "gemma" else 1.0
            out[name] = offset + 0.1 * rng.normal(size=shape)
        else:
            out[name] = 0.1 * rng.normal(size=shape)
    return out


# ----------------------------------------------------------------------------- safetensors

def read_safetensors(path) -> dict:
    """{transformers name: array} of a model.safetensors file, a folder holding one, or a
    folder of shards listed by model.safetensors.index.json."""
    path = Path(path)
    files = [path]
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        if index.is_file():
            mapping = parse_json("path", index.read_text(encoding="utf-8")).get("weight_map", {})
            files = [path / f for f in sorted(set(mapping.values()))]
        else:
            files = [path / "model.safetensors"]
    tensors = {}
    for f in files:
        try:
            found, _ = loads(read_bytes(f), f.name)
        except TensorFileError as exc:
            raise InputError(f"path: {exc}") from None
        tensors.update(found)
    return tensors


def from_checkpoint(c: ModelConfig, tensors: dict, dtype=np.float64, where="path") -> dict:
    """Internal weights from {transformers name: array}: every tensor of the name map must be
    present with its shape (an error names the missing or mis-shaped tensor); a tied model
    takes its head from the embedding (a stored lm_head.weight must equal it); tensors the
    model does not use are an error unless listed in IGNORED_SUFFIXES."""
    shapes = weight_shapes(c)
    weights = {}
    for name, hf in name_map(c).items():
        if hf not in tensors:
            raise InputError(f"{where}: tensor {hf!r} is missing (expected shape {shapes[name]})")
        arr = np.asarray(tensors[hf])
        if tuple(arr.shape) != shapes[name]:
            raise InputError(f"{where}: tensor {hf!r} has shape {tuple(arr.shape)}, expected "
                             f"{shapes[name]} from the config")
        weights[name] = arr.astype(dtype)
    used = set(name_map(c).values())
    if c.tie_embeddings and "lm_head.weight" in tensors:
        head = np.asarray(tensors["lm_head.weight"]).astype(dtype)
        if head.shape != weights["embed"].shape or not np.array_equal(head, weights["embed"]):
            raise InputError(f"{where}: tensor 'lm_head.weight' differs from the embedding, "
                             "but tie_word_embeddings is true")
        used.add("lm_head.weight")
    for hf in sorted(tensors):
        if hf not in used and not hf.endswith(IGNORED_SUFFIXES):
            raise InputError(f"{where}: unexpected tensor {hf!r} (not in the name map of a "
                             f"{c.model_type} config)")
    return weights


def load_weights(path, config, dtype=np.float64) -> dict:
    """Internal weights of `config` (a ModelConfig or anything load_config reads) from the
    safetensors file(s) at `path`, converted to `dtype`."""
    c = config if isinstance(config, ModelConfig) else load_config(config)
    return from_checkpoint(c, read_safetensors(path), dtype)


def to_checkpoint(c: ModelConfig, weights: dict) -> dict:
    """{transformers name: array} of internal weights (the name map inverted)."""
    check_weights(c, weights)
    return {hf: np.ascontiguousarray(weights[name]) for name, hf in name_map(c).items()}


# ----------------------------------------------------------------------------- tiny configs

TINY_CONFIGS = {
    "tiny_llama": {"model_type": "llama", "vocab_size": 64, "hidden_size": 32,
                   "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "max_position_embeddings": 32,
                   "rms_norm_eps": 1e-5, "rope_theta": 100.0, "tie_word_embeddings": False},
    "tiny_mistral": {"model_type": "mistral", "vocab_size": 64, "hidden_size": 32,
                     "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "max_position_embeddings": 32,
                     "rms_norm_eps": 1e-5, "rope_theta": 100.0, "sliding_window": 4,
                     "tie_word_embeddings": False},
    "tiny_gemma": {"model_type": "gemma", "vocab_size": 64, "hidden_size": 32,
                   "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 32,
                   "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                   "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True},
    "tiny_mixtral": {"model_type": "mixtral", "vocab_size": 64, "hidden_size": 32,
                     "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "max_position_embeddings": 32,
                     "num_local_experts": 4, "num_experts_per_tok": 2, "rms_norm_eps": 1e-5,
                     "rope_theta": 1000.0, "tie_word_embeddings": False},
    "tiny_deepseek_v3": {"model_type": "deepseek_v3", "vocab_size": 64, "hidden_size": 32,
                         "intermediate_size": 32, "moe_intermediate_size": 8,
                         "num_hidden_layers": 2, "first_k_dense_replace": 1,
                         "num_attention_heads": 4, "num_key_value_heads": 4,
                         "q_lora_rank": 16, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
                         "qk_rope_head_dim": 4, "v_head_dim": 8, "n_routed_experts": 8,
                         "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 4,
                         "topk_group": 2, "routed_scaling_factor": 2.5, "norm_topk_prob": True,
                         "max_position_embeddings": 32, "rms_norm_eps": 1e-6,
                         "rope_theta": 100.0, "tie_word_embeddings": False},
    "tiny_bert": {"model_type": "bert", "vocab_size": 64, "hidden_size": 32,
                  "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
                  "hidden_act": "gelu"},
}


def tiny_config(name: str) -> ModelConfig:
    if name not in TINY_CONFIGS:
        raise InputError(f"config: no tiny config {name!r} (known: {sorted(TINY_CONFIGS)})")
    return config_from_dict(TINY_CONFIGS[name])
