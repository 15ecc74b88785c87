"""LoRA: low-rank adapters on a linear layer (specs/lora_linear.yaml), merged and unmerged,
and on an NF4-quantized base weight as in QLoRA.

A linear layer W (N, K) (out, in, as nn.Linear) gets a rank-r adapter A (r, K), B (N, r)
(PEFT's lora_A.weight, lora_B.weight):

    y = x W^T + s (dropout(x) A^T) B^T,   s = alpha / r   (rsLoRA: alpha / sqrt(r))

Dropout acts on the adapter's input only, and only when training; at evaluation it is the
identity. Merging folds the adapter into the weight, W' = W + s B A, after which
x W'^T equals the unmerged output up to rounding; unmerging subtracts it again. QLoRA keeps
W frozen as NF4 codes with one absmax per block and dequantizes it for every product;
merging into it gives a dense weight (re-quantizing that would round the adapter away).
"""
import math

import numpy as np

from llmref.errors import InputError
from llmref.ref.model import reference, reference_module
from llmref.validate import float_array, positive


def lora_scaling(alpha, rank, use_rslora=False) -> float:
    """s = alpha / r, or alpha / sqrt(r) with rsLoRA (Kalajdzievski 2023; PEFT use_rslora)."""
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


def lora_args(x, weight, lora_a, lora_b, alpha, use_rslora):
    """Validated (x (..., K), W (N, K), A (r, K), B (N, r), s) with 1 <= r <= min(N, K): a
    rank above the layer's cannot add anything a full update would not, so it is refused."""
    weight = float_array("weight", weight, ndim=2)
    n, k = weight.shape
    x = float_array("x", x, min_ndim=1)
    if x.shape[-1] != k:
        raise InputError(f"x: last axis {x.shape[-1]} differs from the layer's in_features {k}")
    lora_a = float_array("lora_a", lora_a, ndim=2)
    lora_b = float_array("lora_b", lora_b, ndim=2)
    rank = lora_a.shape[0]
    if rank < 1 or rank > min(n, k):
        raise InputError(f"lora_a: rank r={rank} must lie in [1, min(in_features, out_features)"
                         f" = {min(n, k)}] for a {n} x {k} layer")
    if lora_a.shape[1] != k:
        raise InputError(f"lora_a: shape {lora_a.shape}, expected (r, in_features) = ({rank}, {k})")
    if lora_b.shape != (n, rank):
        raise InputError(f"lora_b: shape {lora_b.shape}, expected (out_features, r) = ({n}, {rank})")
    for name, arr in (("x", x), ("lora_a", lora_a), ("lora_b", lora_b)):
        if arr.dtype != weight.dtype:
            raise InputError(f"{name}: dtype {arr.dtype} differs from the weight's {weight.dtype}")
    positive("alpha", alpha)
    if not isinstance(use_rslora, (bool, np.bool_)):
        raise InputError(f"use_rslora: expected a bool, got {use_rslora!r}")
    return x, weight, lora_a, lora_b, lora_scaling(alpha, rank, bool(use_rslora))


def lora_delta(lora_a, lora_b, scaling):
    """s B A: the update the adapter adds to W, (N, K)."""
    return lora_b.dtype.type(scaling) * (lora_b @ lora_a)


def lora_forward(x, weight, lora_a, lora_b, scaling):
    """x W^T + s (x A^T) B^T, the adapter kept apart (the low-rank path: r (K + N) per row)."""
    return x @ weight.T + x.dtype.type(scaling) * ((x @ lora_a.T) @ lora_b.T)


def lora_linear(x, weight, lora_a, lora_b, alpha=16.0, use_rslora=False):
    """Spec entry point: y = x W^T + s (x A^T) B^T (unmerged, evaluation: no dropout) and the
    merged weight W + s B A."""
    x, weight, lora_a, lora_b, s = lora_args(x, weight, lora_a, lora_b, alpha, use_rslora)
    return {"y": lora_forward(x, weight, lora_a, lora_b, s),
            "merged_weight": weight + lora_delta(lora_a, lora_b, s)}


class LoRALinear:
    """A linear layer with a LoRA adapter, callable on x (..., K) like the weight it wraps
    (llmref.ref.model applies a callable weight as a layer).

    dropout p applies to the adapter's input when training: dropout(x) = x * keep / (1 - p)
    with the keep mask supplied (deterministic); at evaluation (the default) it is the
    identity. merge() folds s B A into the weight and unmerge() takes it out; merging an
    already merged layer is refused (a second merge would add the update twice)."""

    def __init__(self, weight, lora_a, lora_b, alpha, use_rslora=False, dropout=0.0):
        weight, self.lora_a, self.lora_b = (np.asarray(a) for a in (weight, lora_a, lora_b))
        _, self.weight, _, _, self.scaling = lora_args(
            np.zeros((1, weight.shape[1]), weight.dtype), weight, self.lora_a, self.lora_b,
            alpha, use_rslora)
        self.weight = self.weight.copy()
        positive("dropout", dropout, allow_zero=True)
        if dropout >= 1:
            raise InputError(f"dropout: must lie in [0, 1), got {dropout}")
        self.dropout = dropout
        self.merged = False

    def __call__(self, x, training=False, keep=None):
        x = np.asarray(x)
        if self.merged:
            if training:
                raise InputError("training: a merged layer has no separate adapter to train")
            return x @ self.weight.T
        if training and self.dropout:
            if keep is None or np.shape(keep) != x.shape:
                raise InputError(f"keep: training with dropout {self.dropout} needs a keep mask "
                                 f"of x's shape {x.shape}")
            adapter_in = x * np.asarray(keep, x.dtype) / x.dtype.type(1 - self.dropout)
        else:
            adapter_in = x
        s = x.dtype.type(self.scaling)
        return x @ self.weight.T + s * ((adapter_in @ self.lora_a.T) @ self.lora_b.T)

    def merge(self):
        if self.merged:
            raise InputError("merge: the adapter is already merged; merging again would add "
                             "s B A twice")
        self.weight = self.weight + lora_delta(self.lora_a, self.lora_b, self.scaling)
        self.merged = True

    def unmerge(self):
        if not self.merged:
            raise InputError("unmerge: the adapter is not merged")
        self.weight = self.weight - lora_delta(self.lora_a, self.lora_b, self.scaling)
        self.merged = False


# ----------------------------------------------------------------------------- QLoRA

def nf4_base(weight, block_size=64):
    """Quantize a frozen base weight (N, K) to NF4 with the nf4_quantize component:
    (packed codes, absmax per block of `block_size` consecutive row-major elements)."""
    weight = float_array("weight", weight, ndim=2)
    packed, absmax, _ = reference("nf4_quantize")(x=weight.reshape(-1), block_size=block_size)
    return packed, absmax


def nf4_weight(packed, absmax, shape, block_size=64):
    """The dequantized base weight NF4[code] * absmax[block], (N, K), in absmax's dtype."""
    return reference_module("nf4_quantize").nf4_dequantize(packed, absmax,
                                                           block_size).reshape(shape)


def qlora_linear(x, packed, absmax, shape, lora_a, lora_b, alpha=16.0, block_size=64,
                 use_rslora=False):
    """QLoRA (Dettmers et al. 2023, eq. 5): y = x dequant(W_NF4)^T + s (x A^T) B^T, the base
    dequantized to the compute dtype for the product and never updated."""
    weight = nf4_weight(packed, absmax, shape, block_size).astype(np.asarray(x).dtype)
    x, weight, lora_a, lora_b, s = lora_args(x, weight, lora_a, lora_b, alpha, use_rslora)
    return lora_forward(x, weight, lora_a, lora_b, s)


def qlora_merged_weight(packed, absmax, shape, lora_a, lora_b, alpha=16.0, block_size=64,
                        use_rslora=False):
    """dequant(W_NF4) + s B A as a dense weight (merging an adapter into a 4-bit base)."""
    weight = nf4_weight(packed, absmax, shape, block_size)
    s = lora_args(np.zeros((1, shape[1]), weight.dtype), weight, np.asarray(lora_a, weight.dtype),
                  np.asarray(lora_b, weight.dtype), alpha, use_rslora)[4]
    return weight + lora_delta(np.asarray(lora_a, weight.dtype), np.asarray(lora_b, weight.dtype), s)


def lora_case(rng, M, K, N, R):
    """Case generator: x ~ N(0, 1), W ~ N(0, 1/K); A ~ N(0, 1/K) and B ~ N(0, 1/(4 R))
    (PEFT starts B at 0; a trained adapter is not), so s B A ~ N(0, s^2/(4 K)) is of the
    order of W for the cases' s in [1, 4]."""
    return {"x": rng.normal(size=(M, K)), "weight": rng.normal(scale=K ** -0.5, size=(N, K)),
            "lora_a": rng.normal(scale=K ** -0.5, size=(R, K)),
            "lora_b": rng.normal(scale=0.5 * R ** -0.5, size=(N, R))}
