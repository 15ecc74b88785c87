"""Wrong whole-model variants: the reference model with one component swapped for one of
that component's own wrong variants (looked up by id in its spec), or with one
inference-path bug. Each must fail the model specs' audits."""
import numpy as np

from llmref.ref.model import REFERENCE_OPS, ContiguousKVCache, decoder_forward, \
    decoder_outputs, encoder_config, encoder_forward, mean_pool, model_decoder_args, reference
from llmref.ref.model_config import unflatten
from llmref.spec import load_spec, resolve


def variant(component: str, variant_id: str):
    """The implementation of one of a component's wrong variants, as its spec names it."""
    spec = load_spec(component)
    impl = next(v.impl for v in spec.wrong_variants if v.id == variant_id)
    return resolve(impl, f"{component}.yaml: wrong_variants.{variant_id}")


def _decoder_with(ops=None, cache_class=ContiguousKVCache):
    """model_decoder with components replaced ({spec id: (component, variant id) or fn})."""
    def wrong(weights, prompt, continuation, uniforms, config, temperature=1.0, top_k=0):
        c, w, prompt, continuation, uniforms, sampled = model_decoder_args(
            weights, prompt, continuation, uniforms, config, temperature, top_k)
        swapped = {name: variant(*fn) if isinstance(fn, tuple) else fn
                   for name, fn in (ops or {}).items()}
        return decoder_outputs(c, w, prompt, continuation, uniforms, sampled,
                               REFERENCE_OPS.replaced(**swapped), cache_class)
    return wrong


def _embedding_unscaled(ids, weight, normalizer="none"):
    """Gemma's sqrt(D) normaliser forgotten (a Llama embedding layer for a Gemma checkpoint)."""
    return np.asarray(weight)[np.asarray(ids)]


class _CacheRotatingAtLength(ContiguousKVCache):
    """Decode steps rotate the new token at the cache length after the append (t + 1)."""

    def forward(self, c, w, ids, ops=None):
        n = np.shape(ids)[1]
        shift = 1 if n == 1 else 0
        positions = np.arange(self.length + shift, self.length + shift + n)
        logits = decoder_forward(c, w, ids, ops, cache=self, positions=positions)
        self.length += n
        return logits


def _moe_bias_in_weights(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate,
                         shared_up, shared_down, method="mixtral", top_k=2, n_group=1,
                         topk_group=1, routed_scaling_factor=1.0, capacity_factor=0.0,
                         use_shared=False):
    """DeepSeek-V3 with combine weights from the biased selection scores (vLLM PR 12002):
    the router's own wrong variant, combined as the moe_layer reference combines."""
    hidden = np.asarray(hidden)
    routed = variant("moe_router", "v3_bias_in_weights")(
        hidden @ np.asarray(gate_weight).T, bias, method, top_k=top_k, n_group=n_group,
        topk_group=topk_group, routed_scaling_factor=routed_scaling_factor,
        capacity_factor=capacity_factor)
    swiglu = reference("swiglu")
    y = np.zeros_like(hidden)
    for t, (experts, weights) in enumerate(zip(routed["expert_ids"], routed["weights"])):
        for e, weight in zip(experts, weights):
            inner = swiglu(gate=hidden[t] @ w_gate[e].T, up=hidden[t] @ w_up[e].T)
            y[t] += weight * (inner @ w_down[e].T)
    if use_shared:
        y += swiglu(gate=hidden @ shared_gate.T, up=hidden @ shared_up.T) @ shared_down.T
    return {"y": y, "expert_ids": routed["expert_ids"], "weights": routed["weights"],
            "kept": routed["kept"]}


gemma_norm_without_offset = _decoder_with({"rmsnorm": ("rmsnorm", "ignores_weight_offset")})
gemma_exact_gelu = _decoder_with({"geglu": ("geglu", "exact_gelu")})
gemma_embedding_unscaled = _decoder_with({"embedding": _embedding_unscaled})
rope_pairing_swapped = _decoder_with({"rope": ("rope", "pairing_swapped")})
gqa_heads_tiled = _decoder_with({"sdpa": ("sdpa", "gqa_tiled_heads")})
swiglu_activates_up = _decoder_with({"swiglu": ("swiglu", "activates_up")})
decode_top_left_causal = _decoder_with({"sdpa": ("sdpa", "top_left_causal")})
decode_position_off_by_one = _decoder_with(cache_class=_CacheRotatingAtLength)
mixtral_without_renormalisation = _decoder_with(
    {"moe_layer": ("moe_layer", "mixtral_no_renormalisation")})  # Qwen's norm_topk_prob=False
deepseek_bias_in_weights = _decoder_with({"moe_layer": _moe_bias_in_weights})
deepseek_shared_expert_scaled = _decoder_with({"moe_layer": ("moe_layer", "shared_expert_weighted")})
mla_rope_key_normalised = _decoder_with({"mla": ("mla", "rope_key_normalised")})
mla_scale_of_cached_width = _decoder_with({"mla": ("mla", "scale_of_cached_width")})


# ----------------------------------------------------------------------------- encoder

def _encoder_with(ops=None, pool=mean_pool):
    def wrong(weights, ids, token_type_ids, attention_mask, config):
        c = encoder_config(config)
        w = unflatten(c, np.asarray(weights))
        swapped = {name: variant(*fn) if isinstance(fn, tuple) else fn
                   for name, fn in (ops or {}).items()}
        h = encoder_forward(c, w, ids, token_type_ids, attention_mask,
                            REFERENCE_OPS.replaced(**swapped))
        return {"hidden": h, "pooled": pool(h, np.asarray(attention_mask))}
    return wrong


def _sdpa_without_padding_mask(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0):
    """Padding keys attended like real ones (the attention mask never reaches the kernel)."""
    return reference("sdpa")(q=q, k=k, v=v, key_padding_mask=np.ones_like(key_padding_mask),
                             causal=causal, window=window, scale=scale)


def _mean_over_every_token(h, attention_mask):
    """Mean pooling that averages the padding positions too."""
    return h.mean(axis=1)


bert_tanh_gelu = _encoder_with({"gelu": ("gelu", "tanh_approximation")})
bert_padding_attended = _encoder_with({"sdpa": _sdpa_without_padding_mask})
bert_positions_one_based = _encoder_with({"learned_positions": ("learned_positions", "off_by_one")})
bert_pooling_counts_padding = _encoder_with(pool=_mean_over_every_token)
