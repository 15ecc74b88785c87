"""The model specs (model_decoder, model_moe, model_encoder) on an accelerated backend: the
reference model (llmref.ref.model) assembled from that backend's kernels instead of the
reference components. Nothing is re-implemented: each component is the kernel its spec names
for the backend (`accel: <backend>:`), called through the model's component table with the
spec's keyword arguments; a component without a kernel there stays the reference's. The
prefill/decode paths are the reference's, decode_logits going through the paged KV cache (the
kv_write and paged_attention_decode kernels). Arguments are checked by the reference's
model_decoder_args / encoder checks before any kernel runs."""
from functools import lru_cache

from llmref.ref.model import Components, decoder_outputs, encoder_config, encoder_forward, \
    mean_pool, model_decoder_args
from llmref.ref.model_config import unflatten
from llmref.ref.model_serving import paged_logits
from llmref.spec import load_spec, resolve
from llmref.validate import float_array

COMPONENTS = ("embedding", "lm_head", "rmsnorm", "layernorm", "rope", "learned_positions",
              "sdpa", "mla", "swiglu", "geglu", "gelu", "moe_layer", "kv_write",
              "paged_attention_decode", "sample_tokens")


@lru_cache(maxsize=None)
def kernels(backend: str) -> Components:
    """Every component `backend` has a kernel for, as the specs name them."""
    found = {}
    for name in COMPONENTS:
        spec = load_spec(name)
        if backend in spec.accel:
            found[name] = resolve(spec.accel[backend]["impl"], f"{name}.yaml: accel.{backend}")
    return Components(found)


def model_decoder(backend, weights, prompt, continuation, uniforms, config, temperature, top_k):
    c, w, prompt, continuation, uniforms, sampled = model_decoder_args(
        weights, prompt, continuation, uniforms, config, temperature, top_k)
    return decoder_outputs(c, w, prompt, continuation, uniforms, sampled, kernels(backend),
                           decode=paged_logits)


def model_encoder(backend, weights, ids, token_type_ids, attention_mask, config):
    c = encoder_config(config)
    w = unflatten(c, float_array("weights", weights, ndim=1))
    h = encoder_forward(c, w, ids, token_type_ids, attention_mask, kernels(backend))
    return {"hidden": h, "pooled": mean_pool(h, attention_mask)}
