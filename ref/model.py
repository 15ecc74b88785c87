"""Whole models assembled from llmref's own components (specs/model_decoder.yaml,
model_moe.yaml, model_encoder.yaml): a decoder-only transformer (Llama, Gemma, Mixtral,
DeepSeek-V3 families) with its KV-cached decode and generation, and a BERT-style encoder
with mean pooling.

Read it like nanoGPT's model.py: one function per block, shapes in the comments. Every
numerical step that is a component of llmref is *called* as that component, through a
`Components` table keyed by spec id (embedding, rmsnorm, rope, sdpa, mla, swiglu, geglu,
moe_layer, lm_head, layernorm, learned_positions, gelu, sample_tokens, ...) with the keyword
arguments that spec names; by default each entry is the reference the spec's `ref:` field
names. The accelerated models pass their kernels instead, and `llmref audit --impact` swaps
one entry for the implementation under audit. Only the glue between components is written
here: linear maps x @ W^T, head splitting and merging, residual sums, the cache bookkeeping.
Everything computes in the dtype of the weights.

Shapes: B batch, L tokens, D hidden, V vocab, Hq / Hkv query / KV heads of width d,
F MLP width, E experts. Weights: see llmref.ref.model_config (internal names, (out, in)).
Paged KV caches and continuous batching are in llmref.ref.model_serving.
"""
import importlib
from dataclasses import dataclass

import numpy as np

from llmref.cases import call_with
from llmref.errors import InputError
from llmref.ref.model_config import MLA_NORM_EPS, ModelConfig, flatten, init_weights, \
    load_config, unflatten
from llmref.spec import load_spec, resolve
from llmref.validate import float_array, int_array, integer, positive


def reference(component: str):
    """The reference implementation of a component: the function its spec's `ref:` names."""
    return resolve(load_spec(component).ref, f"{component}.yaml: ref")


def reference_module(component: str):
    """The module holding a component's reference (for the helpers it defines beside it)."""
    return importlib.import_module(load_spec(component).ref.partition(":")[0])


class Components:
    """The implementation of every component a model calls, by spec id.

    `ops.rmsnorm(x=..., weight=..., eps=..., weight_offset=...)` calls the rmsnorm
    implementation with the spec's keyword arguments and returns its output: one array, or,
    for a component with several outputs, a dict by output name (an implementation may
    return a tuple in spec order, a dict or one value, as under audit). A component without
    an override is its reference."""

    def __init__(self, overrides=None):
        self.impl = dict(overrides or {})

    def replaced(self, **overrides) -> "Components":
        return Components({**self.impl, **overrides})

    def __getattr__(self, component):
        impl = self.__dict__.get("impl", {})
        if component.startswith("__"):
            raise AttributeError(component)
        fn = impl.get(component) or reference(component)
        outputs = [t.name for t in load_spec(component).outputs]

        def call(**kwargs):
            result = call_with(fn, outputs, kwargs, {})
            return result[outputs[0]] if len(outputs) == 1 else result
        return call


REFERENCE_OPS = Components()


def dtype_name(dtype) -> str:
    return str(np.dtype(dtype))


# ============================================================================ decoder

def decoder_forward(c: ModelConfig, w: dict, ids, ops=None, cache=None, positions=None):
    """logits (B, L, V) of a decoder-only transformer over ids (B, L):

      h_0 = embed(ids);  h_{i+1} = block_i(h_i)  (pre-norm residual);  logits = head(norm(h_L))

    positions: (L,) or (B, L), default 0..L-1. cache: None for one causal forward over the
    whole of ids; else a KV cache (llmref.ref.model_serving) holding the earlier tokens of
    every sequence, which attends the new tokens over them and stores their keys."""
    ops = ops or REFERENCE_OPS
    return output_logits(c, w, decoder_hidden(c, w, ids, ops, cache, positions), ops)


def decoder_hidden(c: ModelConfig, w: dict, ids, ops=None, cache=None, positions=None):
    """The last block's output h_L (B, L, D), before the final norm (see decoder_forward)."""
    ops = ops or REFERENCE_OPS
    ids, positions = check_tokens(c, ids, positions)
    h = embed_tokens(c, w, ids, ops)  # (B, L, D)
    for i in range(c.num_layers):
        h = decoder_block(c, w, i, h, positions, ops, cache)
    return h


def check_tokens(c: ModelConfig, ids, positions):
    """ids (B, L) in [0, V); positions (L,) or (B, L), every one < max_position_embeddings."""
    ids = int_array("ids", ids, ndim=2, low=0, high=c.vocab_size)
    if positions is None:
        positions = np.arange(ids.shape[1])
    positions = np.asarray(positions, dtype=np.int64)
    if positions.shape not in ((ids.shape[1],), ids.shape):
        raise InputError(f"positions: shape {positions.shape} fits neither ({ids.shape[1]},) "
                         f"nor {ids.shape}")
    if positions.size and positions.max() >= c.max_position:
        raise InputError(f"ids: position {int(positions.max())} is beyond "
                         f"max_position_embeddings={c.max_position} (a prompt of "
                         f"{int(positions.max()) + 1} tokens is too long for this model)")
    return ids, positions


def embed_tokens(c, w, ids, ops):
    """h = E[ids] (B, L, D); Gemma scales by sqrt(D) rounded to the activation dtype."""
    normalizer = dtype_name(w["embed"].dtype) if c.family == "gemma" else "none"
    return ops.embedding(ids=ids, weight=w["embed"], normalizer=normalizer)


def rms_norm(c, weight, x, ops):
    """x / sqrt(mean(x^2) + eps) * w,  Gemma: * (1 + w)."""
    return ops.rmsnorm(x=x, weight=weight, eps=c.norm_eps,
                       weight_offset=1.0 if c.family == "gemma" else 0.0)


def decoder_block(c, w, i, h, positions, ops, cache):
    """h + attention(norm(h)), then + feed_forward(norm(.))   (B, L, D) -> (B, L, D)."""
    p = f"layers.{i}."
    h = h + attention_block(c, w, i, rms_norm(c, w[p + "attn_norm"], h, ops), positions, ops, cache)
    return h + feed_forward(c, w, i, rms_norm(c, w[p + "mlp_norm"], h, ops), ops)


def attention_block(c, w, i, x, positions, ops, cache):
    if c.is_mla:
        return latent_attention(c, w, i, x, positions, ops, cache)
    return grouped_query_attention(c, w, i, x, positions, ops, cache)


def split_heads(x, n_heads):
    """(B, L, H*d) -> (B, H, L, d)."""
    b, length, width = x.shape
    return x.reshape(b, length, n_heads, width // n_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, L, d) -> (B, L, H*d)."""
    b, h, length, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, length, h * d)


def times_transpose(x, weight):
    """x @ W^T over the last axis: (..., in) -> (..., out). (Flattened to one 2-D product:
    NumPy multiplies a stacked (B, L, in) operand far slower than the same rows as a matrix.)"""
    return (x.reshape(-1, x.shape[-1]) @ weight.T).reshape(x.shape[:-1] + (weight.shape[0],))


def project(weight, x):
    """x @ W^T for a weight (out, in); a weight given as a layer object (anything callable on
    x, e.g. llmref.ref.lora.LoRALinear with its adapter) is called instead."""
    return weight(x) if callable(weight) else times_transpose(x, weight)


class Int4Linear:
    """A linear layer whose weight is stored as INT4, applied by the w4a16_matmul component:
    codes q (N, K) in 0..15 with one scale S and zero-point Z per group of `group_size` along
    K (the quantize_linear component, affine, unsigned 4-bit, groups along the input axis),
    packed canonically (the int4_layouts component's 'packed'); y = x ((q - Z) S)^T.
    `matmul` is the w4a16_matmul implementation (default: the reference)."""

    def __init__(self, weight, group_size=32, matmul=None):
        weight = float_array("weight", weight, ndim=2)
        self.shape, self.group_size = weight.shape, group_size
        q, scale, zero, self.dequantized = reference("quantize_linear")(
            x=weight, bits=4, scheme="affine", signed=False, granularity="group", axis=1,
            group_size=group_size)
        self.packed = reference("int4_layouts")(q=q.astype(np.uint8),
                                                zeros=zero.astype(np.uint8))["packed"]
        self.scales, self.zeros = scale, zero.astype(np.uint8)
        self.matmul = matmul or reference("w4a16_matmul")

    def __call__(self, x):
        rows = x.reshape(-1, self.shape[1])  # (M, K)
        y = self.matmul(x=rows, w_packed=self.packed, scales=self.scales.astype(x.dtype),
                        zeros=self.zeros, group_size=self.group_size)
        return np.asarray(y).reshape(x.shape[:-1] + (self.shape[0],))


def int4_weights(c: ModelConfig, w: dict, group_size=32, matmul=None) -> dict:
    """w with every attention and dense-MLP projection replaced by its Int4Linear (embedding,
    norms and head stay as they are, as GPTQ/AWQ checkpoints keep them)."""
    names = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
    return {k: Int4Linear(v, group_size, matmul) if k.rsplit(".", 1)[-1] in names else v
            for k, v in w.items()}


def rope(c, x, positions, ops, interleaved=False, **rope_params):
    """The rope component on x (B, H, L, d) at positions (L,) or (B, L)."""
    return ops.rope(x=x, positions=positions, interleaved=interleaved, **(rope_params or c.rope))


def grouped_query_attention(c, w, i, x, positions, ops, cache):
    """q = RoPE(x Wq^T), k = RoPE(x Wk^T), v = x Wv^T split into Hq, Hkv, Hkv heads;
    causal attention with scale 1/sqrt(d) (KV head j serves query heads j*G .. j*G+G-1,
    G = Hq/Hkv; Mistral: a sliding window of W keys); heads merged and projected by Wo."""
    p = f"layers.{i}."
    q = rope(c, split_heads(project(w[p + "wq"], x), c.num_heads), positions, ops)  # (B, Hq, L, d)
    k = rope(c, split_heads(project(w[p + "wk"], x), c.num_kv_heads), positions, ops)  # (B, Hkv, L, d)
    v = split_heads(project(w[p + "wv"], x), c.num_kv_heads)  # (B, Hkv, L, d)
    if cache is None:
        every_key = np.ones((x.shape[0], x.shape[1]), dtype=bool)
        out = ops.sdpa(q=q, k=k, v=v, key_padding_mask=every_key, causal=True,
                       window=c.sliding_window, scale=0.0)
    else:
        out = cache.attend(i, q, k, v, scale=0.0, window=c.sliding_window, ops=ops)
    return project(w[p + "wo"], merge_heads(out))  # (B, L, Hq*d) @ (Hq*d, D)


def mla_params(c):
    """The mla component's params for this config (YaRN when rope factor > 1)."""
    r = c.rope
    return dict(n_heads=c.num_heads, d_nope=c.qk_nope_head_dim, d_rope=c.qk_rope_head_dim,
                rope_base=r["base"], rope_factor=r["factor"],
                original_max_position_embeddings=r["original_max_position_embeddings"],
                mscale=r["mscale"], mscale_all_dim=r["mscale_all_dim"], eps=MLA_NORM_EPS,
                interleaved=True)


def latent_attention(c, w, i, x, positions, ops, cache):
    """DeepSeek multi-head latent attention.

    Full forward: the mla component itself (naive form: the latent up-projected to per-head
    keys and values), with the weights handed over as (in, out) matrices.
    Cached: the weight-absorbed form over a cache of latents, one "KV head" per token of
    width Rkv + dr holding [c_kv | RoPE(k_pe)] (what vLLM's MLA caches):
      q_lat_h = W_UK_h q_nope_h;  s_h[j] = scale ([q_lat_h | q_pe_h] . [c_kv_j | k_pe_j])
      out_h = W_UV_h (sum_j softmax(s_h)_j c_kv_j)
    i.e. MQA whose value is the key's first Rkv channels."""
    p = f"layers.{i}."
    if cache is None:
        names = ("wq_a", "q_norm", "wq_b", "wkv_a", "kv_norm", "wkv_b", "wo")
        weights = {n: w[p + n] if w[p + n].ndim == 1 else w[p + n].T for n in names}
        return ops.mla(x=x, positions=positions, **weights, **mla_params(c))
    q_nope, q_pe, c_kv, k_pe = latent_projections(c, w, i, x, positions, ops)
    dn, dv, rank, heads = c.qk_nope_head_dim, c.v_head_dim, c.kv_lora_rank, c.num_heads
    w_kv = w[p + "wkv_b"].reshape(heads, dn + dv, rank)  # per head [W_UK_h; W_UV_h]
    w_uk, w_uv = w_kv[:, :dn], w_kv[:, dn:]  # (H, dn, Rkv), (H, dv, Rkv)
    q_lat = np.einsum("bhld,hdc->bhlc", q_nope, w_uk)  # (B, H, L, Rkv)
    q = np.concatenate([q_lat, q_pe], axis=-1)  # (B, H, L, Rkv + dr)
    latent = np.concatenate([c_kv, k_pe], axis=-1)[:, None]  # (B, 1, L, Rkv + dr)
    scale = mla_softmax_scale(c)
    out = cache.attend(i, q, latent, latent, scale=scale, window=0, ops=ops)  # (B, H, L, Rkv+dr)
    heads_out = np.einsum("bhlc,hvc->bhlv", out[..., :rank], w_uv)  # (B, H, L, dv)
    return times_transpose(merge_heads(heads_out), w[p + "wo"])


def mla_softmax_scale(c):
    """(d_nope + d_rope)^-0.5, times mscale(factor, mscale_all_dim)^2 = (0.1 m ln factor + 1)^2
    under YaRN (factor > 1, mscale_all_dim m set): the mla spec's scale, which the full
    forward's mla component applies itself (equal paths: tests/test_model_serving.py)."""
    scale = (c.qk_nope_head_dim + c.qk_rope_head_dim) ** -0.5
    factor, m = c.rope["factor"], c.rope["mscale_all_dim"]
    if factor > 1 and m:
        scale *= (0.1 * m * np.log(factor) + 1.0) ** 2
    return scale


def latent_projections(c, w, i, x, positions, ops):
    """q = RMSNorm(x Wq_a^T) Wq_b^T per head [q_nope | q_pe];  [c | k_pe] = x Wkv_a^T,
    c_kv = RMSNorm(c) (the norm never touches k_pe); q_pe and the one shared k_pe rotated
    with interleaved pairs. Returns (B, H, L, dn), (B, H, L, dr), (B, L, Rkv), (B, L, dr)."""
    p = f"layers.{i}."
    q_a = ops.rmsnorm(x=times_transpose(x, w[p + "wq_a"]), weight=w[p + "q_norm"],
                      eps=MLA_NORM_EPS, weight_offset=0.0)
    q = split_heads(times_transpose(q_a, w[p + "wq_b"]), c.num_heads)  # (B, H, L, dn + dr)
    kv_a = times_transpose(x, w[p + "wkv_a"])  # (B, L, Rkv + dr)
    rank = c.kv_lora_rank
    c_kv = ops.rmsnorm(x=kv_a[..., :rank], weight=w[p + "kv_norm"], eps=MLA_NORM_EPS,
                       weight_offset=0.0)
    params = dict(c.rope, rope_type="yarn" if c.rope["factor"] > 1 else "default")
    q_pe = rope(c, q[..., c.qk_nope_head_dim:], positions, ops, interleaved=True, **params)
    k_pe = rope(c, kv_a[:, None, :, rank:], positions, ops, interleaved=True, **params)[:, 0]
    return q[..., :c.qk_nope_head_dim], q_pe, c_kv, k_pe


def feed_forward(c, w, i, x, ops):
    p = f"layers.{i}."
    if c.moe_layer(i):
        return mixture_of_experts(c, w, i, x, ops)
    return gated_mlp(c, w[p + "w_gate"], w[p + "w_up"], w[p + "w_down"], x, ops)


def gated_mlp(c, w_gate, w_up, w_down, x, ops):
    """(act(x W_gate^T) * x W_up^T) W_down^T: SwiGLU (silu), Gemma's GeGLU (tanh GELU);
    the activation is on the gate branch only."""
    gate, up = project(w_gate, x), project(w_up, x)  # (..., F) each
    if c.activation == "gelu_tanh":
        return project(w_down, ops.geglu(gate=gate, up=up))
    return project(w_down, ops.swiglu(gate=gate, up=up))


def mixture_of_experts(c, w, i, x, ops):
    """The moe_layer component over the B*L tokens: Mixtral (softmax -> top-k ->
    renormalise) or DeepSeek-V3 (sigmoid, selection bias, group-limited top-k, renormalise,
    x routed_scaling_factor, plus the always-on shared expert)."""
    p = f"layers.{i}."
    b, length, d = x.shape
    experts = [f"{p}experts.{e}." for e in range(c.num_experts)]

    def stacked(part):
        return np.stack([w[e + part] for e in experts])  # (E, F, D) or (E, D, F)

    shared = c.num_shared_experts > 0
    none = np.zeros((1, d), dtype=x.dtype)  # placeholders, not read when use_shared is false
    out = ops.moe_layer(
        hidden=x.reshape(b * length, d), gate_weight=w[p + "router"],
        bias=w.get(p + "router_bias", np.zeros(c.num_experts, dtype=x.dtype)),
        w_gate=stacked("w_gate"), w_up=stacked("w_up"), w_down=stacked("w_down"),
        shared_gate=w[p + "shared.w_gate"] if shared else none,
        shared_up=w[p + "shared.w_up"] if shared else none,
        shared_down=w[p + "shared.w_down"] if shared else none.T,
        method="deepseek_v3" if c.family == "deepseek_v3" else "mixtral", top_k=c.top_k,
        n_group=c.n_group, topk_group=c.topk_group,
        routed_scaling_factor=c.routed_scaling_factor, capacity_factor=0.0, use_shared=shared)
    return out["y"].reshape(b, length, d)


def output_logits(c, w, h, ops):
    """logits = RMSNorm(h) W_head^T, W_head = the embedding when tied (counted once)."""
    h = rms_norm(c, w["final_norm"], h, ops)
    return ops.lm_head(h=h, embedding=w["embed"], output_weight=w.get("lm_head", w["embed"]),
                       tied=c.tie_embeddings)


# ============================================================================ encoder

def linear(x, weight, bias):
    """x W^T + b."""
    return times_transpose(x, weight) + bias


def encoder_forward(c: ModelConfig, w: dict, ids, token_type_ids, attention_mask, ops=None):
    """Hidden states (B, L, D) of a BERT encoder over ids (B, L); attention_mask (B, L) bool
    marks the real tokens (padding keys are masked; padded rows are computed all the same)."""
    ops = ops or REFERENCE_OPS
    ids, token_type_ids, attention_mask = check_encoder_inputs(c, ids, token_type_ids,
                                                               attention_mask)
    h = encoder_embeddings(c, w, ids, token_type_ids, ops)  # (B, L, D)
    for i in range(c.num_layers):
        h = encoder_block(c, w, i, h, attention_mask, ops)
    return h


def check_encoder_inputs(c, ids, token_type_ids, attention_mask):
    ids = int_array("ids", ids, ndim=2, low=0, high=c.vocab_size)
    if ids.shape[1] > c.max_position:
        raise InputError(f"ids: {ids.shape[1]} tokens exceed max_position_embeddings="
                         f"{c.max_position}")
    token_type_ids = int_array("token_type_ids", token_type_ids, ndim=2, low=0,
                               high=c.type_vocab_size)
    mask = np.asarray(attention_mask)
    if mask.dtype != np.bool_:
        raise InputError(f"attention_mask: expected a bool array, got {mask.dtype}")
    for name, arr in (("token_type_ids", token_type_ids), ("attention_mask", mask)):
        if arr.shape != ids.shape:
            raise InputError(f"{name}: shape {arr.shape} differs from ids {ids.shape}")
    return ids, token_type_ids, mask


def layer_norm(c, w, prefix, x, ops):
    return ops.layernorm(x=x, weight=w[prefix + ".weight"], bias=w[prefix + ".bias"],
                         eps=c.norm_eps)


def encoder_embeddings(c, w, ids, token_type_ids, ops):
    """LayerNorm(E_word[ids] + E_pos[0..L-1] + E_type[token_type_ids])   (B, L, D)."""
    word = ops.embedding(ids=ids, weight=w["embed"], normalizer="none")
    where = ops.learned_positions(table=w["pos_embed"], positions=np.arange(ids.shape[1]))
    kind = ops.embedding(ids=token_type_ids, weight=w["type_embed"], normalizer="none")
    return layer_norm(c, w, "embed_norm", word + where + kind, ops)


def encoder_block(c, w, i, h, attention_mask, ops):
    """Post-LN: h = LN(h + attention(h)); h = LN(h + W_out gelu(W_in h + b_in) + b_out),
    with the exact (erf) GELU."""
    p = f"layers.{i}."
    h = layer_norm(c, w, p + "attn_norm", h + self_attention(c, w, i, h, attention_mask, ops), ops)
    inner = ops.gelu(x=linear(h, w[p + "w_in"], w[p + "b_in"]))  # (B, L, F)
    return layer_norm(c, w, p + "mlp_norm", h + linear(inner, w[p + "w_out"], w[p + "b_out"]), ops)


def self_attention(c, w, i, x, attention_mask, ops):
    """Bidirectional multi-head attention with biases; padding keys masked."""
    p = f"layers.{i}."
    q = split_heads(linear(x, w[p + "wq"], w[p + "bq"]), c.num_heads)  # (B, H, L, d)
    k = split_heads(linear(x, w[p + "wk"], w[p + "bk"]), c.num_heads)
    v = split_heads(linear(x, w[p + "wv"], w[p + "bv"]), c.num_heads)
    out = ops.sdpa(q=q, k=k, v=v, key_padding_mask=attention_mask, causal=False, window=0,
                   scale=0.0)
    return linear(merge_heads(out), w[p + "wo"], w[p + "bo"])


def mean_pool(h, attention_mask):
    """sum_t m_t h_t / max(sum_t m_t, 1e-9) over the tokens (sentence-transformers' Pooling,
    mean mode): (B, L, D), (B, L) -> (B, D)."""
    m = attention_mask.astype(h.dtype)[..., None]  # (B, L, 1)
    return (h * m).sum(axis=1) / np.maximum(m.sum(axis=1), h.dtype.type(1e-9))


def l2_normalize(x):
    """x / max(||x||_2, 1e-12) per row (torch.nn.functional.normalize; sentence-transformers'
    Normalize module)."""
    norm = np.sqrt((x * x).sum(axis=-1, keepdims=True))
    return x / np.maximum(norm, x.dtype.type(1e-12))


# ============================================================================ KV-cached decode

class ContiguousKVCache:
    """Per layer, K and V preallocated as (B, Hkv, capacity, d) and filled left to right;
    every sequence of the batch holds the same number of tokens, `length`."""

    def __init__(self, batch: int, capacity: int):
        self.batch, self.capacity, self.length = batch, capacity, 0
        self.k, self.v = {}, {}

    def attend(self, layer, q, k, v, scale, window, ops):
        """Store k, v (B, Hkv, n, d) at positions length .. length+n-1 and attend q (B, Hq, n, d)
        over cache[0 .. length+n-1], bottom-right causal (query i sees keys <= length + i)."""
        n = k.shape[2]
        stop = self.length + n
        if stop > self.capacity:
            raise InputError(f"ids: {stop} tokens exceed the cache capacity {self.capacity}")
        if layer not in self.k:  # MLA hands its latent in as k and v: one array holds both
            self.k[layer] = np.zeros(k.shape[:2] + (self.capacity, k.shape[3]), dtype=k.dtype)
            self.v[layer] = self.k[layer] if k is v else \
                np.zeros(v.shape[:2] + (self.capacity, v.shape[3]), dtype=v.dtype)
        self.k[layer][:, :, self.length:stop] = k
        self.v[layer][:, :, self.length:stop] = v
        every_key = np.ones((self.batch, stop), dtype=bool)
        return ops.sdpa(q=q, k=self.k[layer][:, :, :stop], v=self.v[layer][:, :, :stop],
                        key_padding_mask=every_key, causal=True, window=window, scale=scale)

    def forward(self, c, w, ids, ops=None):
        """Logits (B, n, V) of the next n tokens of every sequence; they join the cache."""
        positions = np.arange(self.length, self.length + np.shape(ids)[1])
        logits = decoder_forward(c, w, ids, ops, cache=self, positions=positions)
        self.length += len(positions)
        return logits


def cached_logits(c, w, prompt, continuation, ops=None, cache_class=ContiguousKVCache):
    """Prefill the prompt (B, P), then decode the continuation (B, C) one token at a time:
    the logits after the prompt and after each continuation token, (B, C + 1, V), equal to
    decoder_forward over [prompt | continuation] at positions P-1 .. P+C-1."""
    prompt, continuation = np.asarray(prompt), np.asarray(continuation)
    cache = cache_class(prompt.shape[0], prompt.shape[1] + continuation.shape[1])
    steps = [cache.forward(c, w, prompt, ops)[:, -1:]]
    for t in range(continuation.shape[1]):
        steps.append(cache.forward(c, w, continuation[:, t:t + 1], ops))
    return np.concatenate(steps, axis=1)


# ============================================================================ sampling

@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy (argmax, lowest id on ties) when `greedy`, else
    the inverse CDF of softmax(top_k(logits / temperature)) at a supplied uniform
    (the sample_tokens component, 'hf' processor order)."""
    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


GREEDY = Sampling()


def next_tokens(logits, uniforms, sampling, ops=None):
    """Token ids (B,) from last-position logits (B, V); uniforms (B,) in [0, 1) (unused when
    greedy); sampling: one Sampling or a list of one per row."""
    ops = ops or REFERENCE_OPS
    rows, vocab = logits.shape
    per_row = sampling if isinstance(sampling, (list, tuple)) else [sampling] * rows

    def column(attr, dtype=np.float64):
        return np.array([getattr(s, attr) for s in per_row], dtype=dtype)

    out = ops.sample_tokens(
        logits=logits, prompt_ids=np.full((rows, 1), -1, np.int64),
        output_ids=np.full((rows, 1), -1, np.int64), temperature=column("temperature"),
        top_k=column("top_k", np.int64), top_p=column("top_p"), min_p=np.zeros(rows),
        typical_p=np.ones(rows), repetition_penalty=np.ones(rows), presence_penalty=np.zeros(rows),
        frequency_penalty=np.zeros(rows), uniforms=np.asarray(uniforms, np.float64),
        gumbel=np.zeros((rows, vocab), dtype=logits.dtype), order="hf")
    greedy = column("greedy", bool)
    return np.where(greedy, out["greedy_ids"], out["sampled_ids"]).astype(np.int64)


def generate(c, w, prompt, n_new, uniforms=None, sampling=GREEDY, ops=None,
             cache_class=ContiguousKVCache):
    """n_new tokens after each prompt (B, P) through a contiguous KV cache; uniforms (B, n_new)
    drive sampled steps (zeros for greedy). Returns (tokens (B, n_new), logits (B, n_new, V)
    each step sampled from)."""
    prompt = np.asarray(prompt)
    batch = prompt.shape[0]
    uniforms = np.zeros((batch, n_new)) if uniforms is None else np.asarray(uniforms)
    cache = cache_class(batch, prompt.shape[1] + n_new)
    logits = cache.forward(c, w, prompt, ops)[:, -1]  # (B, V)
    tokens, seen = [], []
    for t in range(n_new):
        seen.append(logits)
        tokens.append(next_tokens(logits, uniforms[:, t], sampling, ops))
        if t + 1 < n_new:
            logits = cache.forward(c, w, tokens[-1][:, None], ops)[:, 0]
    return np.stack(tokens, axis=1), np.stack(seen, axis=1)


# ============================================================================ spec entry point

def decoder_config(config) -> ModelConfig:
    c = load_config(config)
    if c.family == "bert":
        raise InputError("config: model_type 'bert' is an encoder; see model_encoder")
    return c


def model_decoder(weights, prompt, continuation, uniforms, config, temperature=1.0, top_k=0):
    """Spec entry point (model_decoder, model_moe): with ids = [prompt | continuation],

      logits          decoder_forward(ids)                                   (B, P+C, V)
      decode_logits   prefill the prompt, then decode the continuation one token at a time
                      through the KV cache: equal to logits[:, P-1:]           (B, C+1, V)
      greedy_tokens   N tokens generated greedily after the prompt              (B, N)
      sampled_tokens  N tokens sampled after the prompt: inverse CDF of
                      softmax(top_k(logits / temperature)) at uniforms[:, t]   (B, N)
    config: the transformers config.json text; weights: every tensor of the model in
    canonical order (llmref.ref.model_config.layout)."""
    c, w, prompt, continuation, uniforms, sampled = model_decoder_args(
        weights, prompt, continuation, uniforms, config, temperature, top_k)
    return decoder_outputs(c, w, prompt, continuation, uniforms, sampled)


def model_decoder_args(weights, prompt, continuation, uniforms, config, temperature, top_k):
    """Validated (config, weights by name, prompt, continuation, uniforms, Sampling); every
    backend of model_decoder and model_moe checks through this."""
    c = decoder_config(config)
    w = unflatten(c, float_array("weights", weights, ndim=1))
    prompt = int_array("prompt", prompt, ndim=2, low=0, high=c.vocab_size)
    continuation = int_array("continuation", continuation, ndim=2, low=0, high=c.vocab_size)
    uniforms = float_array("uniforms", uniforms, ndim=2)
    n_new = uniforms.shape[1]
    for name, arr in (("continuation", continuation), ("uniforms", uniforms)):
        if arr.shape[0] != prompt.shape[0]:
            raise InputError(f"{name}: batch {arr.shape[0]} differs from the prompt's {prompt.shape[0]}")
    if prompt.shape[1] == 0:
        raise InputError("prompt: needs at least one token")
    if uniforms.size and (uniforms.min() < 0 or uniforms.max() >= 1):
        raise InputError("uniforms: must lie in [0, 1)")
    positive("temperature", temperature)
    integer("top_k", top_k, low=0, high=c.vocab_size)
    if prompt.shape[1] + n_new > c.max_position:
        raise InputError(f"uniforms: {n_new} new tokens after a {prompt.shape[1]}-token prompt "
                         f"exceed max_position_embeddings={c.max_position}")
    sampled = Sampling(greedy=False, temperature=float(temperature), top_k=int(top_k))
    return c, w, prompt, continuation, uniforms, sampled


def decoder_outputs(c, w, prompt, continuation, uniforms, sampled, ops=None,
                    cache_class=ContiguousKVCache, decode=None):
    """The four outputs of model_decoder for checked arguments, with the components of `ops`
    and KV caches of `cache_class` (a wrong variant swaps either); decode: another path for
    decode_logits, called like cached_logits (the accelerated models pass
    llmref.ref.model_serving.paged_logits, whose paged-attention kernels it exercises)."""
    ids = np.concatenate([prompt, continuation], axis=1)
    n_new = uniforms.shape[1]
    decoded = decode(c, w, prompt, continuation, ops) if decode else \
        cached_logits(c, w, prompt, continuation, ops, cache_class)
    return {"logits": decoder_forward(c, w, ids, ops), "decode_logits": decoded,
            "greedy_tokens": generate(c, w, prompt, n_new, None, GREEDY, ops, cache_class)[0],
            "sampled_tokens": generate(c, w, prompt, n_new, uniforms, sampled, ops,
                                       cache_class)[0]}


# ============================================================================ case generator

DECISION_MARGIN = 1e-3  # relative distance of every discrete decision from its tie


def widest_sum(c: ModelConfig, length: int) -> int:
    """The longest reduction of a forward over `length` tokens: hidden, MLP or expert width,
    the attention width Hq*d (MLA: the latent and head widths) or the sequence length."""
    widths = [c.hidden_size, c.intermediate_size, c.num_heads * c.head_dim, length]
    if c.is_moe:
        widths.append(c.moe_intermediate_size * max(1, c.num_shared_experts))
    if c.is_mla:
        widths += [c.q_lora_rank, c.kv_lora_rank + c.qk_rope_head_dim,
                   c.num_heads * c.v_head_dim, c.qk_nope_head_dim + c.qk_rope_head_dim]
    return max(widths)


def decoder_case(rng, B, P, C, N, R, CONFIG, SAMPLING=(1.0, 0)):
    """Case generator: weights from init_weights, random prompts, continuations and uniforms,
    redrawn (prompts and uniforms) until every discrete decision of the case lies at least
    DECISION_MARGIN from its tie, so that no token or expert choice is decided by rounding
    at any evaluated precision (a float32 forward is off by ~1e-6 of the logit scale):
      greedy steps     top-1 minus top-2 logit >= margin * max|logits|
      sampled steps    the top-k boundary logits as far apart, and the uniform at least
                       margin from every cumulative probability of the filtered softmax
      MoE routing      every token's k-th minus (k+1)-th selection score >= margin, and the
                       group choice's likewise
    R is the case's reduction length (the spec tolerance's), checked to be widest_sum;
    SAMPLING = [temperature, top_k], the case's sampling params, whose margins are checked."""
    c = load_config(CONFIG)
    if R != widest_sum(c, P + C + N):
        raise ValueError(f"R: the widest sum of this case is {widest_sum(c, P + C + N)}, not {R}")
    w = init_weights(c, rng)
    sampling = Sampling(greedy=False, temperature=float(SAMPLING[0]), top_k=int(SAMPLING[1]))
    for _ in range(200):
        prompt = rng.integers(0, c.vocab_size, size=(B, P))
        continuation = rng.integers(0, c.vocab_size, size=(B, C))
        uniforms = rng.uniform(0.02, 0.98, size=(B, N))
        if _robust(c, w, prompt, continuation, uniforms, sampling):
            return {"weights": flatten(c, w), "prompt": prompt, "continuation": continuation,
                    "uniforms": uniforms}
    raise RuntimeError(f"{CONFIG}: no robust draw in 200 attempts")  # a case design error


def _robust(c, w, prompt, continuation, uniforms, sampling):
    margins = []
    ops = REFERENCE_OPS.replaced(moe_layer=_recording_moe(margins))
    decoder_forward(c, w, np.concatenate([prompt, continuation], axis=1), ops)
    _, greedy_logits = generate(c, w, prompt, uniforms.shape[1], ops=ops)
    _, sampled_logits = generate(c, w, prompt, uniforms.shape[1], uniforms, sampling, ops)
    for step in np.moveaxis(greedy_logits, 1, 0):  # (B, V) per step
        top = np.sort(step, axis=-1)
        margins.append((top[:, -1] - top[:, -2]).min() / np.abs(step).max())
    for t, step in enumerate(np.moveaxis(sampled_logits, 1, 0)):
        margins.append(_sampling_margin(step, uniforms[:, t], sampling))
    return min(margins) >= DECISION_MARGIN


def _sampling_margin(logits, uniforms, sampling):
    """Distance of each row's sampled token from a different outcome (see decoder_case)."""
    out = []
    for row, u in zip(logits, uniforms):
        z = row / sampling.temperature
        if sampling.top_k:
            top = np.sort(z)
            out.append((top[-sampling.top_k] - top[-sampling.top_k - 1]) / np.abs(z).max())
            z = np.where(z >= top[-sampling.top_k], z, -np.inf)
        p = np.exp(z - z.max())
        out.append(np.abs(np.cumsum(p / p.sum()) - u).min())
    return min(out)


def _recording_moe(margins):
    """moe_layer that also records the selection margins of its routing."""
    def fn(hidden, gate_weight, bias, method, top_k, n_group, topk_group, **rest):
        margins.append(routing_margin(hidden @ gate_weight.T, bias, method, top_k, n_group,
                                      topk_group))
        return reference("moe_layer")(hidden=hidden, gate_weight=gate_weight, bias=bias,
                                      method=method, top_k=top_k, n_group=n_group,
                                      topk_group=topk_group, **rest)
    return fn


def routing_margin(logits, bias, method, top_k, n_group, topk_group):
    """min over tokens of the k-th minus the (k+1)-th selection score among the experts of
    the groups kept, and of the group choice's (topk_group-th minus next group score), with
    the moe_layer spec's selection scores: softmax (mixtral), sigmoid + bias (deepseek_v3),
    group score = sum of the group's top-2 (deepseek_v3) or its max (deepseek_v2)."""
    if method == "deepseek_v3":
        scores = 1 / (1 + np.exp(-logits)) + bias
    else:
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        scores = e / e.sum(axis=-1, keepdims=True)
    gaps = []
    if method != "mixtral" and n_group > 1:
        grouped = np.sort(scores.reshape(len(scores), n_group, -1), axis=-1)  # (T, G, E/G)
        group_score = grouped[..., -2:].sum(axis=-1) if method == "deepseek_v3" \
            else grouped[..., -1]
        ranked = np.sort(group_score, axis=-1)
        gaps.append(ranked[:, -topk_group] - ranked[:, -topk_group - 1])
        kept = group_score >= ranked[:, -topk_group][:, None]  # (T, G): the chosen groups
        scores = np.where(np.repeat(kept, scores.shape[1] // n_group, axis=-1), scores, -np.inf)
    ranked = np.sort(scores, axis=-1)
    if top_k < scores.shape[1]:
        finite = np.isfinite(ranked[:, -top_k - 1])
        gaps.append(np.where(finite, ranked[:, -top_k] - ranked[:, -top_k - 1], np.inf))
    return min(float(np.min(g)) for g in gaps) if gaps else np.inf


def encoder_config(config) -> ModelConfig:
    c = load_config(config)
    if c.family != "bert":
        raise InputError(f"config: model_type {c.model_type!r} is not an encoder (bert)")
    return c


def model_encoder(weights, ids, token_type_ids, attention_mask, config):
    """Spec entry point (model_encoder): the encoder's hidden states and their mean pooling.
    config: the transformers config.json text; weights: every tensor in canonical order."""
    c = encoder_config(config)
    w = unflatten(c, float_array("weights", weights, ndim=1))
    h = encoder_forward(c, w, ids, token_type_ids, attention_mask)
    return {"hidden": h, "pooled": mean_pool(h, np.asarray(attention_mask))}


def encoder_case(rng, B, L, R, CONFIG, PADDING=3):
    """Case generator: init_weights, random token ids, token types 0 then 1 (a sentence
    pair), and every row after the first shorter by PADDING tokens (pad id 0, mask False).
    R is the case's reduction length, checked to be max(hidden, intermediate, L)."""
    c = encoder_config(CONFIG)
    if R != max(c.hidden_size, c.intermediate_size, L):
        raise ValueError(f"R: the widest sum is {max(c.hidden_size, c.intermediate_size, L)}")
    w = init_weights(c, rng)
    mask = np.ones((B, L), dtype=bool)
    mask[1:, L - PADDING:] = False
    ids = np.where(mask, rng.integers(1, c.vocab_size, size=(B, L)), 0)
    types = np.broadcast_to((np.arange(L) >= L // 2).astype(np.int64), (B, L)).copy()
    return {"weights": flatten(c, w), "ids": ids, "token_type_ids": types, "attention_mask": mask}
