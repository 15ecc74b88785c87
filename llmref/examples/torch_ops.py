"""PyTorch (the CPU build) as shipped, adapted to llmref's specs.

Each function takes a spec's arguments by name (`llmref show COMPONENT`) and calls torch;
@torch_adapter hands it torch tensors (bfloat16 included, no copy on the CPU) and turns the
tensors it returns back into NumPy. The adapters only map conventions:

* sdpa: the spec's masks (key padding, bottom-right causal, sliding window) are one explicit
  boolean attn_mask; torch's is_causal=True is top-left aligned and is never used. The spec's
  scale = 0 means 1/sqrt(D), which torch spells scale=None. GQA through enable_gqa=True
  (repeat_interleave order, as the spec's h // (Hq / Hkv)). Fully masked rows: torch >= 2.5
  gives 0 there (the math and flash CPU kernels' safe softmax), as the spec does.
* rmsnorm: Gemma's (1 + w) is formed in float32 or wider before torch.rms_norm multiplies,
  as HF GemmaRMSNorm does, never in the half dtype.
* quantize_linear: torch's observers choose S and Z; the codes come from torch's
  PT2E quantize ops (round(x / S) + Z, as the spec) or, in quantize_linear_fbgemm, from
  torch.quantize_per_channel (round(x / S + Z), which differs at exact ties with an odd Z).
"""
import numpy as np
import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  registers torch.ops.quantized_decomposed
import torch.nn.functional as F
from torch.ao.quantization.observer import PerChannelMinMaxObserver

from llmref.adapters import torch_adapter
from llmref.errors import Unsupported

HALF = ("float16", "bfloat16")


# --- attention -----------------------------------------------------------------------------

def sdpa_mask(key_padding_mask, lq, causal, window):
    """The spec's keep mask (B, 1, Lq, Lk) as one boolean attn_mask: key padding AND
    bottom-right causal (query i sits at position i + Lk - Lq) AND the sliding window."""
    lk = key_padding_mask.shape[1]
    pos = torch.arange(lq)[:, None] + (lk - lq)  # (Lq, 1): absolute position of query i
    j = torch.arange(lk)[None, :]                # (1, Lk)
    keep = key_padding_mask[:, None, None, :]    # (B, 1, 1, Lk)
    if causal:
        keep = keep & (j <= pos)
    if window:
        keep = keep & (j > pos - window)
    return keep.expand(-1, 1, lq, lk)


@torch_adapter
def sdpa(q, k, v, key_padding_mask, causal, window, scale):
    mask = sdpa_mask(key_padding_mask, q.shape[2], causal, window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale or None,
                                          enable_gqa=q.shape[1] != k.shape[1])


# --- softmax, norms ------------------------------------------------------------------------

@torch_adapter
def softmax(x, axis):
    return torch.softmax(x, dim=axis)


@torch_adapter
def log_softmax(x, axis):
    return torch.log_softmax(x, dim=axis)


@torch_adapter
def layernorm(x, weight, bias, eps):
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


@torch_adapter
def rmsnorm(x, weight, eps, weight_offset):
    if weight_offset:  # Gemma: 1 + w in float32 or wider (HF GemmaRMSNorm), not in the half dtype
        weight = weight.to(torch.promote_types(weight.dtype, torch.float32)) + weight_offset
    return F.rms_norm(x, x.shape[-1:], weight, eps)


# --- activations ---------------------------------------------------------------------------

@torch_adapter
def gelu(x):
    return F.gelu(x)


@torch_adapter
def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


@torch_adapter
def silu(x):
    return F.silu(x)


@torch_adapter
def relu(x):
    return F.relu(x)


@torch_adapter
def glu(x):
    return F.glu(x, dim=-1)


@torch_adapter
def geglu(gate, up):
    return F.gelu(gate, approximate="tanh") * up


@torch_adapter
def swiglu(gate, up):
    return F.silu(gate) * up


# --- distillation --------------------------------------------------------------------------

def _kl(log_a, log_b):
    """Per-token KL(a || b) = kl_div(input=log b, target=log a) summed over classes."""
    return F.kl_div(log_b, log_a, reduction="none", log_target=True).sum(-1)


@torch_adapter
def kd_loss(student_logits, teacher_logits, labels, mask, kind, temperature, alpha, beta,
            ignore_index):
    """The losses from torch.nn.functional (kl_div, cross_entropy, log_softmax), reduced as the
    spec says (sum over valid tokens / their number); the gradient by autograd."""
    z = student_logits.detach().clone().requires_grad_(True)
    t = temperature
    valid = mask & (labels != ignore_index)
    log_q = F.log_softmax(z / t, dim=-1)                   # student
    log_p = F.log_softmax(teacher_logits / t, dim=-1)      # teacher
    if kind == "hinton":
        hard = F.cross_entropy(z.flatten(0, -2), labels.flatten(), ignore_index=ignore_index,
                               reduction="none").view(labels.shape)
        per_token = alpha * t * t * _kl(log_p, log_q) + (1 - alpha) * hard
    elif kind == "forward_kl":
        per_token = _kl(log_p, log_q)
    elif kind == "reverse_kl":
        per_token = _kl(log_q, log_p)
    elif beta == 0:  # TRL generalized_jsd_loss endpoints
        per_token = _kl(log_p, log_q)
    elif beta == 1:
        per_token = _kl(log_q, log_p)
    else:            # TRL: mixture in log space, m = beta p + (1 - beta) q
        log_m = torch.logsumexp(torch.stack([log_q + np.log(1 - beta), log_p + np.log(beta)]), 0)
        per_token = beta * _kl(log_p, log_m) + (1 - beta) * _kl(log_q, log_m)
    loss = torch.where(valid, per_token, 0).sum() / valid.sum()
    loss.backward()
    return loss.detach().reshape(1), z.grad


# --- quantization --------------------------------------------------------------------------

def _code_range(bits, scheme, signed):
    """The spec's integer range of a scheme: restricted symmetric, full affine."""
    if scheme == "symmetric":
        half = 2 ** (bits - 1) - 1
        return (-half, half) if signed else (1, 2 ** bits - 1)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def _as_channels(x, granularity, axis, group_size):
    """x as (slices, elements): one row per slice sharing a scale, and the shape the spec gives
    scale (x's rank) with the function that folds the rows' parameters back into it."""
    if granularity == "tensor":
        return x.reshape(1, -1), lambda p: p.reshape((1,) * x.dim())
    if granularity == "channel":
        moved = x.movedim(axis, 0)
        shape = [1] * x.dim()
        shape[axis] = x.shape[axis]
        return moved.reshape(x.shape[axis], -1), lambda p: p.reshape(shape)
    moved = x.movedim(axis, -1)                           # (..., n)
    outer = moved.shape[:-1] + (moved.shape[-1] // group_size,)
    return moved.reshape(-1, group_size), lambda p: p.reshape(outer).movedim(-1, axis)


def _unfolder(x, granularity, axis, group_size):
    """The inverse of _as_channels for a tensor of x's size."""
    if granularity == "tensor":
        return lambda t: t.reshape(x.shape)
    if granularity == "channel":
        moved = x.movedim(axis, 0).shape
        return lambda t: t.reshape(moved).movedim(0, axis)
    moved = x.movedim(axis, -1).shape
    return lambda t: t.reshape(moved).movedim(-1, axis)


def _qparams(rows, bits, scheme, signed):
    """S and Z per row from torch's PerChannelMinMaxObserver. Unsigned symmetric is the signed
    scheme shifted by 2^(b-1) (the spec's definition): torch's observers insist on a code range
    that holds 0, which [1, 2^b - 1] does not."""
    if scheme == "symmetric":
        qmin, qmax = _code_range(bits, scheme, True)
        observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, quant_min=qmin,
                                            quant_max=qmax, qscheme=torch.per_channel_symmetric)
        observer(rows)
        s, z = observer.calculate_qparams()
        return s, z + (0 if signed else 2 ** (bits - 1))
    qmin, qmax = _code_range(bits, scheme, signed)
    observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8 if signed else torch.quint8,
                                        quant_min=qmin, quant_max=qmax,
                                        qscheme=torch.per_channel_affine)
    observer(rows)
    return observer.calculate_qparams()


_OBSERVER_REASONS = {
    "zero_slice": "torch's observers clamp the scale of an all-zero slice to float32 eps "
                  "(observer.py _calculate_qparams: torch.max(scale, self.eps)); the spec gives S = 1",
    "affine4_groups_all_positive": "torch's affine observer widens [min, max] to include 0 "
                                   "(min_val_neg = min(min_val, 0)); the spec uses the slice's own "
                                   "min and max, so an all-positive slice gets another S",
    "affine4_signed_groups_negative": "torch's affine observer widens [min, max] to include 0 "
                                      "(max_val_pos = max(max_val, 0)); the spec uses the slice's "
                                      "own min and max, so an all-negative slice gets another S",
    "binary_per_row": "torch ships no binary (sign, mean|x|) quantizer",
    "ternary_groups": "torch ships no ternary (TWN) quantizer",
    "ternary_threshold_ties": "torch ships no ternary (TWN) quantizer",
}


@torch_adapter(dtypes=["float32"], skip=_OBSERVER_REASONS)
def quantize_linear(x, bits, scheme, signed, granularity, axis, group_size):
    """S, Z from torch's observer; q = torch.ops.quantized_decomposed.quantize_per_channel
    (clamp(round(x * (1/S)) + Z), the PT2E op); x_hat its dequantize_per_channel. Both ops and
    the observers are float32 only (the observer's min/max buffers are float32)."""
    if scheme not in ("symmetric", "affine"):
        raise Unsupported(f"torch ships no {scheme} quantizer")
    rows, fold = _as_channels(x, granularity, axis, group_size)
    s, z = _qparams(rows, bits, scheme, signed)
    qmin, qmax = _code_range(bits, scheme, signed)
    ops = torch.ops.quantized_decomposed
    q = ops.quantize_per_channel(rows, s, z, 0, qmin, qmax, torch.int32)
    x_hat = ops.dequantize_per_channel(q, s, z, 0, qmin, qmax, torch.int32)
    unfold = _unfolder(x, granularity, axis, group_size)
    return (unfold(q), fold(s.to(x.dtype)), fold(z.to(torch.int32)), unfold(x_hat.to(x.dtype)))


_EIGHT_BIT = ("sym8_tensor", "sym8_exact_ties", "sym8_per_row_3d", "sym8_unsigned",
              "affine8_unsigned_tensor", "affine8_exact_ties", "affine8_zero_point_tie",
              "affine8_odd_zero_ties")


@torch_adapter(dtypes=["float32"], cases=_EIGHT_BIT, skip={
    "affine8_odd_zero_ties": "torch.quantize_per_channel (fbgemm, QuantUtils.h Quantize<T, "
                             "LEGACY>) rounds x * inv_scale + Z: with an odd Z an exact tie of "
                             "x / S goes to the other neighbour; the spec adds Z after rounding"})
def quantize_linear_fbgemm(x, bits, scheme, signed, granularity, axis, group_size):
    """torch.quantize_per_channel (the quantized-tensor API; qint8/quint8, so 8-bit codes only)
    with the observer's S, Z; x_hat = its .dequantize()."""
    if bits != 8 or scheme not in ("symmetric", "affine"):
        raise Unsupported("torch's quantized tensors hold 8-bit codes")
    rows, fold = _as_channels(x, granularity, axis, group_size)
    s, z = _qparams(rows, bits, scheme, signed)
    qt = torch.quantize_per_channel(rows, s.double(), z, 0, torch.qint8 if signed else torch.quint8)
    unfold = _unfolder(x, granularity, axis, group_size)
    return (unfold(qt.int_repr().to(torch.int32)), fold(s.to(x.dtype)), fold(z.to(torch.int32)),
            unfold(qt.dequantize().to(x.dtype)))


def _float32_scale(x, scale):
    """torch's fake-quant kernels hold the scale as a C float whatever the tensor's dtype
    (QuantizedOpKernels.cpp fake_quantize_tensor_cachemask_kernel(..., float sc, ...),
    inv_scale = 1.0f / sc): at float64 that is the spec's S only when S is a float32 value."""
    if x.dtype == torch.float64 and float(np.float32(scale)) != scale:
        raise Unsupported(f"torch's fake-quant kernels round the scale {scale!r} to float32 "
                          f"({float(np.float32(scale))!r}); the spec at float64 uses it exactly")


@torch_adapter
def fake_quant(x, grad_y, scale, zero_point, quant_min, quant_max):
    """torch.fake_quantize_per_tensor_affine and its straight-through backward (autograd)."""
    _float32_scale(x, scale)
    x = x.detach().clone().requires_grad_(True)
    y = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, quant_min, quant_max)
    y.backward(grad_y)
    return y.detach(), x.grad


@torch_adapter
def fake_quant_per_channel(x, grad_y, scale, zero_point, quant_min, quant_max):
    """torch.fake_quantize_per_channel_affine with one channel (an int32 zero_point: rounding
    before adding it, as the spec; a float zero_point would round after)."""
    _float32_scale(x, scale)
    x = x.detach().clone().requires_grad_(True)
    y = torch.fake_quantize_per_channel_affine(
        x[None], torch.tensor([scale], dtype=torch.float32),
        torch.tensor([zero_point], dtype=torch.int32), 0, quant_min, quant_max)[0]
    y.backward(grad_y)
    return y.detach(), x.grad


@torch_adapter
def w8a8_matmul(x_q, w_q, x_scale, w_scale):
    """torch._int_mm (int8 x int8 -> int32), rescaled per token and per channel."""
    acc = torch._int_mm(x_q, w_q.t().contiguous())
    return acc, acc.to(x_scale.dtype) * x_scale[:, None] * w_scale[None, :]


# --- serving: embedding, LM head, paged decode, MoE ----------------------------------------

@torch_adapter
def embedding(ids, weight, normalizer):
    """F.embedding (nn.Embedding's lookup); Gemma's normaliser as HF GemmaModel forms it,
    torch.tensor(D ** 0.5, dtype=normalizer dtype), multiplied in the weight's dtype."""
    if ((ids < 0) | (ids >= weight.shape[0])).any():
        raise IndexError("ids: index out of range of the embedding table (F.embedding)")
    y = F.embedding(ids, weight)
    if normalizer == "none":
        return y
    return y * torch.tensor(weight.shape[-1] ** 0.5, dtype=getattr(torch, normalizer)).to(y.dtype)


@torch_adapter
def lm_head(h, embedding, output_weight, tied):
    """F.linear(h, W): nn.Linear(D, V, bias=False), or a tied head reusing the embedding."""
    return F.linear(h, embedding if tied else output_weight)


_GATHERED = {}  # one entry: the contiguous cache of the last paged pool seen (see below)


def _contiguous_cache(k_cache, v_cache, block_tables, seq_lens):
    """(K, V) as (B, Hkv, Lmax, D) and the key mask (B, 1, 1, Lmax), gathered from the pool
    through the block tables. Kept for the tensors it was made from, compared by identity
    (the entry holds them, so an id is never reused): a benchmark that hands the same
    tensors again times SDPA on an already-contiguous cache, the baseline a paged kernel is
    measured against; every new pool (each audited case) is gathered afresh."""
    key = (k_cache, v_cache, block_tables, seq_lens)
    hit = _GATHERED.get("key")
    if hit is not None and all(a is b for a, b in zip(hit, key)):
        return _GATHERED["value"]
    b, bs = block_tables.shape[0], k_cache.shape[1]
    length = int(seq_lens.max()) if b else 0
    blocks = block_tables[:, :-(-length // bs)].long()           # (B, nb)
    def gather(pool):                                             # (B, Hkv, Lmax, D)
        return pool[blocks].flatten(1, 2)[:, :length].transpose(1, 2)
    mask = (torch.arange(length)[None, :] < seq_lens[:, None].long())[:, None, None, :]
    value = (gather(k_cache), gather(v_cache), mask)
    _GATHERED.clear()
    _GATHERED.update(key=key, value=value)
    return value


@torch_adapter
def paged_attention_decode(q, k_cache, v_cache, block_tables, seq_lens, scale):
    """F.scaled_dot_product_attention (GQA through enable_gqa) over the contiguous cache the
    block tables describe, one query per sequence, keys j < seq_lens[b] kept by attn_mask.
    The gather is done once per pool (_contiguous_cache), so `llmref bench` times SDPA on an
    already-contiguous cache; an audit, whose every case is a new pool, gathers each time."""
    k, v, mask = _contiguous_cache(k_cache, v_cache, block_tables, seq_lens)
    out = F.scaled_dot_product_attention(q[:, :, None, :], k, v, attn_mask=mask, scale=scale or None,
                                         enable_gqa=q.shape[1] != k.shape[1])
    return out[:, :, 0, :]


@torch_adapter
def moe_layer(hidden, gate_weight, bias, w_gate, w_up, w_down, shared_gate, shared_up,
              shared_down, method, top_k, n_group, topk_group, routed_scaling_factor,
              capacity_factor, use_shared):
    """The Mixtral sparse-MoE block as transformers' MixtralSparseMoeBlock computes it:
    softmax router, top-k (a stable descending sort: equal scores rank the lower expert
    first, which torch.topk does not promise), renormalised weights, then a loop over the
    experts, each running its SwiGLU on the tokens routed to it and index_add_-ing the
    weighted rows back. Mixtral routing only: no groups, capacity or shared expert."""
    if method != "mixtral" or capacity_factor or use_shared:
        raise Unsupported("transformers' Mixtral block: the mixtral router, dropless, no shared expert")
    t = hidden.shape[0]
    probs = torch.softmax(hidden @ gate_weight.T, dim=-1)
    top, idx = torch.sort(probs, dim=-1, descending=True, stable=True)
    top, idx = top[:, :top_k], idx[:, :top_k]
    top = top / top.sum(-1, keepdim=True)
    y = torch.zeros_like(hidden)
    for e in range(gate_weight.shape[0]):
        token, slot = torch.where(idx == e)
        if token.numel():
            x = hidden[token]
            out = (F.silu(x @ w_gate[e].T) * (x @ w_up[e].T)) @ w_down[e].T
            y.index_add_(0, token, out * top[token, slot, None])
    return {"y": y, "expert_ids": idx, "weights": top,
            "kept": torch.ones((t, top_k), dtype=torch.bool)}
