"""ONNX operators as onnxruntime (the CPU execution provider) runs them, adapted to llmref's
specs; and onnxruntime's com.microsoft MatMulNBits, a third-party INT4 block-quantized
matmul, for w4a16_matmul.

The models are onnx_ops' (the same graphs the ONNX reference evaluator runs). onnxruntime's
Python API has no bfloat16 NumPy type: bfloat16 tensors cross it by their bits
(OrtValue.ortvalue_from_numpy_with_onnx_type on the uint16 view, and back from the output's
buffer), so a bfloat16 audit feeds onnxruntime exactly the audited bits.

MatMulNBits (onnxruntime contrib_ops, bits = 4): B is (N, K / block_size, block_size / 2)
bytes holding element 2i in the low nibble and 2i + 1 in the high one -- the spec's canonical
packing, row by row, so w_packed only changes shape; scales are (N, K / block_size); the
zero points are 4-bit codes packed two per byte along each row (low nibble first, a row
padded to whole bytes). y = A (dequantized B)^T with (q - zero_point) * scale.
"""
import ctypes

import numba
import numpy as np
from onnx import TensorProto, helper

from llmref.adapters import declare
from llmref.dtypes import FORMATS
from llmref.examples import onnx_ops
from llmref.examples.onnx_ops import ELEM, elem, model

_BF16 = FORMATS["bfloat16"].numpy


def _to_ort(arr):
    import onnxruntime as ort

    arr = np.ascontiguousarray(arr)
    if arr.dtype == _BF16:
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(arr.view(np.uint16), TensorProto.BFLOAT16)
    return ort.OrtValue.ortvalue_from_numpy(arr)


def _from_ort(value):
    if value.data_type() != "tensor(bfloat16)":
        return value.numpy()
    n = int(np.prod(value.shape()))
    bits = np.ctypeslib.as_array((ctypes.c_uint16 * n).from_address(value.data_ptr())) if n else \
        np.empty(0, np.uint16)
    return bits.copy().view(_BF16).reshape(value.shape())


def ort_run(onnx_model, feeds: dict) -> list:
    """Run on onnxruntime's CPU execution provider, returning the outputs in order."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a shared machine; results do not depend on it
    session = ort.InferenceSession(onnx_model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    values = {k: _to_ort(v) for k, v in feeds.items()}
    return [_from_ort(v) for v in session.run_with_ort_values(None, values)]


_NO_BF16 = ["float64", "float32", "float16"]  # the CPU EP has no bfloat16 kernel for these


@declare(dtypes=_NO_BF16)
def softmax(x, axis):
    return onnx_ops.run_softmax(ort_run, x, axis)


@declare(dtypes=_NO_BF16)
def log_softmax(x, axis):
    return onnx_ops.run_softmax(ort_run, x, axis, op="LogSoftmax")


_EMPTY_ROWS = ("onnxruntime rejects rows of length 0 ('Size of X.shape[axis:] must be at least "
               "1'); the spec gives an empty result")


@declare(dtypes=["float32", "float16", "bfloat16"], skip={"empty_rows": _EMPTY_ROWS})
def layernorm(x, weight, bias, eps):
    """No float64: ONNX's epsilon attribute is a 32-bit float (1e-5 becomes
    9.99999974738e-06), which moves a float64 result far outside its tolerance."""
    return onnx_ops.run_layernorm(ort_run, x, weight, bias, eps)


@declare(dtypes=["float32", "float16"], skip={"empty_rows": _EMPTY_ROWS})
def rmsnorm(x, weight, eps, weight_offset):
    """No float64 (epsilon is a float32 attribute), no bfloat16 kernel."""
    return onnx_ops.run_rmsnorm(ort_run, x, weight, eps, weight_offset)


@declare(dtypes=["float32", "float16"])
def rope(x, positions, interleaved, partial_rotary_factor, rope_type, base, factor,
         original_max_position_embeddings, low_freq_factor, high_freq_factor, beta_fast,
         beta_slow, mscale, mscale_all_dim):
    return onnx_ops.run_rope(ort_run, x, positions, interleaved, partial_rotary_factor,
                             rope_type=rope_type, base=base, factor=factor,
                             original_max_position_embeddings=original_max_position_embeddings,
                             low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor,
                             beta_fast=beta_fast, beta_slow=beta_slow, mscale=mscale,
                             mscale_all_dim=mscale_all_dim)


@declare(dtypes=["float32", "float16"])
def sdpa(q, k, v, key_padding_mask, causal, window, scale):
    """No bfloat16 kernel; no float64: onnxruntime follows ONNX's function body, which forms
    the scale (default 1/sqrt(D) included) and its square root in float32 and multiplies q and
    k by it, so at float64 q . k is scaled by fl32(sqrt(fl32(1/sqrt(D))))^2."""
    return onnx_ops.run_sdpa(ort_run, q, k, v, key_padding_mask, causal, window, scale)


# --- w4a16_matmul: com.microsoft MatMulNBits ------------------------------------------------

def pack_zero_points(zeros):
    """(N, G) codes 0..15 -> (N, ceil(G / 2)) bytes, code 2i in the low nibble of byte i."""
    n, g = zeros.shape
    padded = np.zeros((n, 2 * ((g + 1) // 2)), np.uint8)
    padded[:, :g] = zeros
    return (padded[:, 0::2] | (padded[:, 1::2] << 4)).astype(np.uint8)


@declare(dtypes=["float32", "float16"])
def w4a16_matmul(x, w_packed, scales, zeros, group_size):
    """MatMulNBits with accuracy_level 0 (compute in A's type); the CPU EP has float32 and
    float16 kernels, no float64 or bfloat16."""
    (m, k), n = x.shape, w_packed.shape[0]
    node = helper.make_node("MatMulNBits", ["a", "b", "scales", "zero_points"], ["y"],
                            domain="com.microsoft", K=k, N=n, bits=4, block_size=group_size)
    t = elem(x)
    onnx_model = model([node], [("a", t), ("b", ELEM["uint8"]), ("scales", t),
                                ("zero_points", ELEM["uint8"])], [("y", t)], 21,
                       domains=["com.microsoft"])
    blocks = w_packed.reshape(n, k // group_size, group_size // 2)
    return ort_run(onnx_model, {"a": x, "b": blocks, "scales": scales,
                                "zero_points": pack_zero_points(zeros)})[0]


_SESSIONS = {}  # one entry: the session built for the last weights seen (see below)


@declare(dtypes=["float32", "float16"])
def w4a16_matmul_prepacked(x, w_packed, scales, zeros, group_size):
    """MatMulNBits as a deployed model holds it: B, scales and zero points are constant
    initializers, which onnxruntime prepacks once when the session is created. The session
    is kept for the weight arrays it was built from, compared by identity (the entry holds
    them, so an id is never reused): a benchmark that hands the same weights again times
    only the matmul; an audit, whose every case brings new arrays, builds a session each."""
    import onnxruntime as ort
    from onnx import numpy_helper

    (m, k), n = x.shape, w_packed.shape[0]
    key = (w_packed, scales, zeros, group_size, x.dtype)
    hit = _SESSIONS.get("key")
    if hit is None or not all(a is b for a, b in zip(hit, key)):
        node = helper.make_node("MatMulNBits", ["a", "b", "scales", "zero_points"], ["y"],
                                domain="com.microsoft", K=k, N=n, bits=4, block_size=group_size)
        t = elem(x)
        graph = model([node], [("a", t)], [("y", t)], 21, domains=["com.microsoft"])
        blocks = np.ascontiguousarray(w_packed.reshape(n, k // group_size, group_size // 2))
        graph.graph.initializer.extend([
            numpy_helper.from_array(blocks, "b"),
            numpy_helper.from_array(np.ascontiguousarray(scales), "scales"),
            numpy_helper.from_array(pack_zero_points(zeros), "zero_points")])
        # as many threads as numba's pool (NUMBA_NUM_THREADS, every core unless set): onnxruntime
        # reads no environment variable for it, and its default pool ignores a one-thread run
        options = ort.SessionOptions()
        options.intra_op_num_threads = numba.config.NUMBA_NUM_THREADS
        session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        _SESSIONS.clear()
        _SESSIONS.update(key=key, session=session)
    return _SESSIONS["session"].run(None, {"a": np.ascontiguousarray(x)})[0]
