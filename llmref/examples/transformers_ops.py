"""Hugging Face transformers as shipped, adapted to llmref's specs.

* rope: a model's own rotary-embedding module computes the tables (float32 inv_freq, angle,
  cos/sin and YaRN's attention factor, autocast off, as transformers does for every model,
  through modeling_rope_utils.ROPE_INIT_FUNCTIONS for the scaled types and the dynamic-NTK
  update at the call's sequence length) and that model's apply_rotary_pos_emb rotates:
  GPT-NeoX's for rotate-half pairs, GLM's for interleaved pairs; both rotate the first
  int(D * partial_rotary_factor) channels and pass the rest through.
* sample_tokens: the logits processors and warpers of transformers.generation
  (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
  TopPLogitsWarper, MinPLogitsWarper, TypicalLogitsWarper) applied row by row with each row's
  parameters, in the order the spec names. transformers ships no presence / frequency
  penalty (OpenAI, vLLM): those two terms are written here in torch. The spec's sampling from
  supplied noise is torch.searchsorted on the cumulative probabilities (inverse CDF) and
  torch.argmax (Gumbel-max, greedy).
* activations: transformers.activations.ACT2FN by the names models' configs use.
"""
import torch

from llmref.adapters import torch_adapter

# --- rope ------------------------------------------------------------------------------------


def rope_config(interleaved, head_dim, heads, partial_rotary_factor, rope_type, base, factor,
                original_max_position_embeddings, low_freq_factor, high_freq_factor, beta_fast,
                beta_slow, mscale, mscale_all_dim):
    """The config of a model with this rope: GPT-NeoX (rotate-half) or GLM (interleaved)."""
    from transformers import GlmConfig, GPTNeoXConfig

    params = {"rope_type": rope_type, "rope_theta": base,
              "partial_rotary_factor": partial_rotary_factor}
    if rope_type != "default":
        params["factor"] = factor
    if rope_type in ("yarn", "llama3"):
        params["original_max_position_embeddings"] = original_max_position_embeddings
    if rope_type == "llama3":
        params.update(low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor)
    if rope_type == "yarn":
        params.update(beta_fast=beta_fast, beta_slow=beta_slow)
        if mscale:  # the spec's 0 means unset, as a missing key in a config
            params["mscale"] = mscale
        if mscale_all_dim:
            params["mscale_all_dim"] = mscale_all_dim
    # dynamic NTK reads the pre-training context from max_position_embeddings; the others
    # from rope_parameters, and a config's max_position_embeddings is the extended context
    context = original_max_position_embeddings * (1 if rope_type == "dynamic" else max(factor, 1))
    common = dict(hidden_size=head_dim * heads, num_attention_heads=heads,
                  max_position_embeddings=int(context), rope_parameters=params)
    if interleaved:
        return GlmConfig(head_dim=head_dim, num_key_value_heads=heads, **common)
    return GPTNeoXConfig(**common)


def rotary_embedding(interleaved, head_dim, heads, partial_rotary_factor, **rope):
    """The model's own rotary-embedding module: GLM's (interleaved) or GPT-NeoX's."""
    from transformers.models.glm.modeling_glm import GlmRotaryEmbedding
    from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding

    config = rope_config(interleaved, head_dim, heads, partial_rotary_factor, **rope)
    return (GlmRotaryEmbedding if interleaved else GPTNeoXRotaryEmbedding)(config)


@torch_adapter(dtypes=["float32", "float16", "bfloat16"])
def rope(x, positions, interleaved, partial_rotary_factor, rope_type, base, factor,
         original_max_position_embeddings, low_freq_factor, high_freq_factor, beta_fast,
         beta_slow, mscale, mscale_all_dim):
    """Declared float32 and below: transformers forms angles and tables in float32 at every
    activation dtype (`position_ids.float() * inv_freq.float()`), where the spec at float64
    asks for float64 angles."""
    from transformers.models.glm.modeling_glm import apply_rotary_pos_emb as interleaved_pairs
    from transformers.models.gpt_neox.modeling_gpt_neox import apply_rotary_pos_emb as halves

    b, h, _, d = x.shape
    embedding = rotary_embedding(
        interleaved, d, h, partial_rotary_factor, rope_type=rope_type, base=base, factor=factor,
        original_max_position_embeddings=original_max_position_embeddings,
        low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor, beta_fast=beta_fast,
        beta_slow=beta_slow, mscale=mscale, mscale_all_dim=mscale_all_dim)
    position_ids = positions.expand(b, -1) if positions.dim() == 1 else positions  # (B, L)
    cos, sin = embedding(x, position_ids)  # (B, L, r), float32 tables cast to x's dtype
    return (interleaved_pairs if interleaved else halves)(x, x, cos, sin)[0]


# --- sample_tokens ---------------------------------------------------------------------------

def _penalise(row, seen, output, repetition, presence, frequency):
    """transformers' repetition penalty over prompt + output ids; the OpenAI presence and
    frequency penalties (not in transformers) over the output ids."""
    from transformers.generation import RepetitionPenaltyLogitsProcessor

    if repetition != 1 and seen.numel():
        row = RepetitionPenaltyLogitsProcessor(penalty=repetition)(seen[None], row)
    if presence or frequency:
        counts = torch.bincount(output, minlength=row.shape[-1]).to(row.dtype)
        row = row - frequency * counts - presence * (counts > 0).to(row.dtype)
    return row


def _warpers(order, temperature, top_k, top_p, min_p, typical_p):
    """The warpers that are on, in the order the spec names (penalties come first in all)."""
    from transformers.generation import (MinPLogitsWarper, TemperatureLogitsWarper,
                                         TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper)

    steps = {"temperature": TemperatureLogitsWarper(temperature),
             "top_k": TopKLogitsWarper(top_k) if top_k > 0 else None,
             "top_p": TopPLogitsWarper(top_p) if top_p < 1 else None,
             "min_p": MinPLogitsWarper(min_p) if min_p > 0 else None,
             "typical_p": TypicalLogitsWarper(typical_p) if typical_p < 1 else None}
    names = {"hf": ["temperature", "top_k", "top_p", "min_p", "typical_p"],
             "vllm": ["temperature", "min_p", "top_k", "top_p"],
             "llama_cpp": ["top_k", "typical_p", "top_p", "min_p", "temperature"]}[order]
    if order == "vllm" and typical_p < 1:  # the spec rejects it, as vLLM has no typical-p
        raise ValueError("typical_p: the vllm order has no typical-p; it must be 1")
    return [steps[n] for n in names if steps[n] is not None]


@torch_adapter
def sample_tokens(logits, prompt_ids, output_ids, temperature, top_k, top_p, min_p, typical_p,
                  repetition_penalty, presence_penalty, frequency_penalty, uniforms, gumbel, order):
    rows, sampled, gumbel_ids, greedy = [], [], [], []
    for b in range(logits.shape[0]):
        seen = torch.cat([prompt_ids[b], output_ids[b]])
        output = output_ids[b][output_ids[b] >= 0]
        row = _penalise(logits[b:b + 1], seen[seen >= 0], output, float(repetition_penalty[b]),
                        float(presence_penalty[b]), float(frequency_penalty[b]))
        greedy.append(torch.argmax(row, dim=-1))  # before temperature and the filters
        for warp in _warpers(order, float(temperature[b]), int(top_k[b]), float(top_p[b]),
                             float(min_p[b]), float(typical_p[b])):
            row = warp(None, row)
        probs = torch.softmax(row, dim=-1)  # (1, V)
        cdf = torch.cumsum(probs, dim=-1)
        u = uniforms[b].to(probs.dtype).reshape(1, 1)
        pick = torch.searchsorted(cdf, u, right=True)[:, 0]  # first j with cdf_j > u
        last = torch.nonzero(probs[0] > 0).max()  # the total mass rounded to <= u
        sampled.append(torch.minimum(pick, last))
        gumbel_ids.append(torch.argmax(row + gumbel[b:b + 1].to(row.dtype), dim=-1))
        rows.append(probs)
    if not rows:
        empty = torch.empty(0, dtype=torch.int64)
        return torch.empty_like(logits), empty, empty, empty
    return torch.cat(rows), torch.cat(sampled), torch.cat(gumbel_ids), torch.cat(greedy)


# --- activations (ACT2FN) --------------------------------------------------------------------

def act2fn(name, dtypes=()):
    """An adapter for one transformers.activations.ACT2FN entry."""
    from transformers.activations import ACT2FN

    fn = ACT2FN[name]

    @torch_adapter(dtypes=dtypes)
    def activation(x):
        return fn(x)

    activation.__name__ = activation.__qualname__ = f"act2fn_{name}"
    return activation


def act2fn_gated(name):
    """A gated MLP's activation: ACT2FN[name](gate) * up (HF LlamaMLP, GemmaMLP)."""
    from transformers.activations import ACT2FN

    fn = ACT2FN[name]

    @torch_adapter
    def activation(gate, up):
        return fn(gate) * up

    activation.__name__ = activation.__qualname__ = f"act2fn_gated_{name}"
    return activation


gelu = act2fn("gelu")
gelu_tanh = act2fn("gelu_pytorch_tanh")
gelu_new = act2fn("gelu_new")
# FastGELUActivation writes sqrt(2/pi) as 0.7978845608 (10 digits, 3.6e-12 relative off):
# invisible in float32, far outside float64's tolerance.
gelu_fast = act2fn("gelu_fast", dtypes=["float32", "float16", "bfloat16"])
silu = act2fn("silu")
relu = act2fn("relu")
swiglu = act2fn_gated("silu")
geglu = act2fn_gated("gelu_pytorch_tanh")
