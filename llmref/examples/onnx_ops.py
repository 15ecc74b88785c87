"""ONNX operators as the ONNX reference evaluator (onnx.reference.ReferenceEvaluator) runs
them, adapted to llmref's specs.

Each adapter builds a one-operator ONNX model (plus the Cast nodes a convention needs) for
the case's dtype and runs it. onnxruntime_ops runs the same models in onnxruntime: the model
builders below take the runner as an argument.

Conventions mapped here:
* Softmax / LogSoftmax (opset 13): one axis, as the spec.
* LayerNormalization (opset 17): axis -1; RMSNormalization (opset 23): axis -1. Gemma's
  (1 + w) is built in the graph, in float32 for half inputs (Cast, Add), and the result is
  cast back to x's dtype: RMSNormalization's output has the scale's type.
* RotaryEmbedding (opset 23): ONNX takes the cos/sin tables as inputs. They are made by
  transformers' rotary-embedding modules (float32, cast to x's dtype, as transformers does;
  see transformers_ops), so the tables carry every rope_type; ONNX does the rotation.
* Attention (opset 23): the spec's masks are one boolean attn_mask (True = attend); ONNX's
  is_causal is top-left aligned without a KV cache. scale = 0 means ONNX's default
  1/sqrt(D). ONNX gives 0 for a fully masked row, as the spec.
"""
import numpy as np
from onnx import TensorProto, helper

from llmref.adapters import declare, torch_to_numpy
from llmref.errors import Unsupported

ELEM = {"float64": TensorProto.DOUBLE, "float32": TensorProto.FLOAT,
        "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
        "bool": TensorProto.BOOL, "int64": TensorProto.INT64, "uint8": TensorProto.UINT8}
IR_VERSION = 10  # what onnxruntime >= 1.18 reads


def elem(arr) -> int:
    return ELEM[str(arr.dtype)]


def compute_elem(dtype) -> int:
    """The element type a spec computes in: float32 for half inputs, the dtype otherwise."""
    return TensorProto.FLOAT if str(dtype) in ("float16", "bfloat16") else ELEM[str(dtype)]


def model(nodes, inputs, outputs, opset, domains=()):
    """A model of `nodes`; inputs and outputs are (name, element type) pairs."""
    graph = helper.make_graph(
        nodes, "llmref_example",
        [helper.make_tensor_value_info(n, t, None) for n, t in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs])
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=imports, ir_version=IR_VERSION)


def reference_run(onnx_model, feeds: dict) -> list:
    """Run with the ONNX reference evaluator (NumPy), returning the outputs in order."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(onnx_model).run(None, feeds)


# --- model builders, shared with onnxruntime_ops --------------------------------------------

def run_softmax(run, x, axis, op="Softmax"):
    m = model([helper.make_node(op, ["x"], ["y"], axis=axis)], [("x", elem(x))], [("y", elem(x))], 13)
    return run(m, {"x": x})[0]


def run_layernorm(run, x, weight, bias, eps):
    node = helper.make_node("LayerNormalization", ["x", "w", "b"], ["y"], axis=-1, epsilon=eps)
    m = model([node], [("x", elem(x)), ("w", elem(x)), ("b", elem(x))], [("y", elem(x))], 17)
    return run(m, {"x": x, "w": weight, "b": bias})[0]


def run_rmsnorm(run, x, weight, eps, weight_offset):
    t = elem(x)
    if not weight_offset:
        node = helper.make_node("RMSNormalization", ["x", "w"], ["y"], axis=-1, epsilon=eps)
        return run(model([node], [("x", t), ("w", t)], [("y", t)], 23), {"x": x, "w": weight})[0]
    # Gemma (HF GemmaRMSNorm): x and 1 + w in float32 (or wider), never in the half dtype,
    # and the product rounded once to x's dtype
    c = compute_elem(x.dtype)
    one = helper.make_tensor("one", c, [], [weight_offset])
    nodes = [helper.make_node("Cast", ["x"], ["xc"], to=c),
             helper.make_node("Cast", ["w"], ["wc"], to=c),
             helper.make_node("Constant", [], ["one"], value=one),
             helper.make_node("Add", ["wc", "one"], ["scale"]),
             helper.make_node("RMSNormalization", ["xc", "scale"], ["yc"], axis=-1, epsilon=eps),
             helper.make_node("Cast", ["yc"], ["y"], to=t)]
    return run(model(nodes, [("x", t), ("w", t)], [("y", t)], 23), {"x": x, "w": weight})[0]


def rope_tables(x, positions, interleaved, partial_rotary_factor, **rope):
    """cos, sin (B, L, r/2) in x's dtype, from transformers' rotary-embedding module for
    this rope (its float32 tables cast to x's dtype, as transformers returns them)."""
    import torch

    from llmref.adapters import numpy_to_torch
    from llmref.examples.transformers_ops import rotary_embedding

    b = x.shape[0]
    embedding = rotary_embedding(interleaved, x.shape[3], x.shape[1], partial_rotary_factor, **rope)
    pos = numpy_to_torch(positions)
    pos = pos.expand(b, -1) if pos.dim() == 1 else pos
    with torch.no_grad():
        cos, sin = embedding(numpy_to_torch(x[:0]), pos)  # (B, L, r): [freqs | freqs]
    half = cos.shape[-1] // 2
    return torch_to_numpy(cos[..., :half].contiguous()), torch_to_numpy(sin[..., :half].contiguous())


def run_rope(run, x, positions, interleaved, partial_rotary_factor, **rope):
    cos, sin = rope_tables(x, positions, interleaved, partial_rotary_factor, **rope)
    node = helper.make_node("RotaryEmbedding", ["x", "cos", "sin"], ["y"],
                            interleaved=int(interleaved), rotary_embedding_dim=2 * cos.shape[-1])
    t = elem(x)
    m = model([node], [("x", t), ("cos", t), ("sin", t)], [("y", t)], 23)
    return run(m, {"x": x, "cos": cos, "sin": sin})[0]


def sdpa_mask(key_padding_mask, lq, causal, window):
    """The spec's keep mask (B, 1, Lq, Lk): key padding AND bottom-right causal (query i sits
    at position i + Lk - Lq) AND the sliding window."""
    lk = key_padding_mask.shape[1]
    pos = np.arange(lq)[:, None] + (lk - lq)
    j = np.arange(lk)[None, :]
    keep = key_padding_mask[:, None, None, :]
    if causal:
        keep = keep & (j <= pos)
    if window:
        keep = keep & (j > pos - window)
    return np.ascontiguousarray(np.broadcast_to(keep, (key_padding_mask.shape[0], 1, lq, lk)))


def run_sdpa(run, q, k, v, key_padding_mask, causal, window, scale):
    mask = sdpa_mask(key_padding_mask, q.shape[2], causal, window)
    attrs = {"scale": float(scale)} if scale else {}
    node = helper.make_node("Attention", ["q", "k", "v", "mask"], ["out"], **attrs)
    t = elem(q)
    m = model([node], [("q", t), ("k", t), ("v", t), ("mask", TensorProto.BOOL)], [("out", t)], 23)
    return run(m, {"q": q, "k": k, "v": v, "mask": mask})[0]


# --- adapters: the reference evaluator ------------------------------------------------------

@declare
def softmax(x, axis):
    return run_softmax(reference_run, x, axis)


_LOG_OF_SOFTMAX = ("the reference evaluator's LogSoftmax is np.log(Softmax(x)) "
                   "(onnx/reference/ops/op_log_softmax.py): a probability that underflows gives "
                   "-inf where the spec's shifted form is finite")


@declare(dtypes=["float64", "float32", "bfloat16"], skip={"wide_range": _LOG_OF_SOFTMAX})
def log_softmax(x, axis):
    """float16 is declared unsupported as well: there exp underflows 17 below the row maximum,
    so even random_rows gets -inf (the same log of an underflowed softmax)."""
    return run_softmax(reference_run, x, axis, op="LogSoftmax")


@declare(dtypes=["float32"])
def layernorm(x, weight, bias, eps):
    """float32 only: at float64 epsilon is a float32 attribute; at float16/bfloat16 the
    reference evaluator computes the statistics in the half dtype, ignoring stash_type = 1
    (op_layer_normalization.py), where the spec (and ONNX's own definition) asks for float32."""
    return run_layernorm(reference_run, x, weight, bias, eps)


@declare(dtypes=["float32"])
def rmsnorm(x, weight, eps, weight_offset):
    """float32 only, for the reasons of layernorm (op_rms_normalization.py squares and averages
    in x's dtype)."""
    return run_rmsnorm(reference_run, x, weight, eps, weight_offset)


@declare(dtypes=["float32", "float16", "bfloat16"])
def rope(x, positions, interleaved, partial_rotary_factor, rope_type, base, factor,
         original_max_position_embeddings, low_freq_factor, high_freq_factor, beta_fast,
         beta_slow, mscale, mscale_all_dim):
    """RotaryEmbedding's type list has no double, and the tables are float32."""
    return run_rope(reference_run, x, positions, interleaved, partial_rotary_factor,
                    rope_type=rope_type, base=base, factor=factor,
                    original_max_position_embeddings=original_max_position_embeddings,
                    low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor,
                    beta_fast=beta_fast, beta_slow=beta_slow, mscale=mscale,
                    mscale_all_dim=mscale_all_dim)


@declare
def sdpa(q, k, v, key_padding_mask, causal, window, scale):
    """An explicit scale is a float32 attribute, and the reference evaluator multiplies q and
    k by its square root taken in float32 (op_attention.py: scale = np.sqrt(scale)): at
    float64 only the default scale is the spec's."""
    applied = float(np.sqrt(np.float32(scale))) ** 2  # what multiplies q . k
    if scale and str(q.dtype) == "float64" and applied != scale:
        raise Unsupported(f"ONNX's scale attribute is a 32-bit float and the reference evaluator "
                          f"takes its square root in float32: q . k is scaled by {applied!r}, "
                          f"not {scale!r}")
    return run_sdpa(reference_run, q, k, v, key_padding_mask, causal, window, scale)
