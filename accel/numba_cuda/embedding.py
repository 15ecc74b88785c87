"""Embedding lookup and LM head as numba.cuda kernels: one thread per output element.

float16/bfloat16 inputs are widened to float32 on the host and the outputs rounded once back.
"""
import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import widen
from llmref.backends import simulated
from llmref.errors import InputError
from llmref.ref.embedding import embedding_normalizer
from llmref.validate import float_array, int_array, same_size

THREADS = 32 if simulated() else 128


@cuda.jit
def _gather_rows(ids, weight, scale, out):
    """out[i, d] = weight[ids[i], d] * scale; thread i * D + d."""
    k = cuda.grid(1)
    dim = weight.shape[1]
    if k < out.shape[0] * dim:
        i, d = k // dim, k % dim
        out[i, d] = weight[ids[i], d] * scale


@cuda.jit
def _logits(h, w, out):
    """out[t, v] = sum_d h[t, d] * w[v, d]; thread t * V + v."""
    k = cuda.grid(1)
    vocab = w.shape[0]
    if k < out.shape[0] * vocab:
        t, v = k // vocab, k % vocab
        acc = 0.0
        for d in range(h.shape[1]):
            acc += h[t, d] * w[v, d]
        out[t, v] = acc


def _launch(kernel, inputs, out_shape, dtype, scalars=(), what=""):
    """kernel(*inputs, *scalars, out) with one thread per output element; out is guarded."""
    n = int(np.prod(out_shape))
    d_buf = cuda.to_device(guarded_host_buffer(n, dtype))
    d_out = interior(d_buf, n).reshape(out_shape)
    blocks = max(1, (n + THREADS - 1) // THREADS)
    kernel[blocks, THREADS](*[cuda.to_device(a) for a in inputs], *scalars, d_out)
    buf = d_buf.copy_to_host()
    check_guards(buf, n, f"numba-cuda {what}")
    return interior(buf, n).reshape(out_shape)


def embedding(ids, weight, normalizer="none"):
    weight = float_array("weight", weight, ndim=2)
    ids = int_array("ids", ids, low=0, high=weight.shape[0])
    scale = 1.0 if normalizer == "none" else embedding_normalizer(weight.shape[1], normalizer)
    table = widen(weight)
    flat_ids = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)  # (n,)
    out = _launch(_gather_rows, [flat_ids, table], (flat_ids.shape[0], table.shape[1]),
                  table.dtype, (table.dtype.type(scale),), "embedding")
    return out.reshape(ids.shape + (table.shape[1],)).astype(weight.dtype)


def lm_head(h, embedding, output_weight, tied=False):
    h = float_array("h", h, min_ndim=1)
    matrices = {}
    for name, value in (("embedding", embedding), ("output_weight", output_weight)):
        matrices[name] = float_array(name, value, ndim=2)
        same_size(name, matrices[name].shape[1], h.shape[-1], "the last axis of h")
        if matrices[name].dtype != h.dtype:
            raise InputError(f"{name}: has dtype {matrices[name].dtype} but h has {h.dtype}")
    if not isinstance(tied, (bool, np.bool_)):
        raise InputError(f"tied: expected a bool, got {tied!r}")
    w = widen(matrices["embedding"] if tied else matrices["output_weight"])  # (V, D)
    rows = widen(h).reshape(-1, h.shape[-1])  # (T, D)
    out = _launch(_logits, [rows, w], (rows.shape[0], w.shape[0]), rows.dtype, what="lm_head")
    return out.reshape(h.shape[:-1] + (w.shape[0],)).astype(h.dtype)
