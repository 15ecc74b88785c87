"""Embedding lookup and LM head as numba.cuda kernels: one thread per output element.

float16/bfloat16 inputs are widened to float32 on the host and the outputs rounded once back.
"""
import math

import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import widen
from llmref.backends import simulated
from llmref.ref.embedding import embedding_args, lm_head_args

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
    ids, weight, scale = embedding_args(ids, weight, normalizer)
    table = widen(weight)
    flat_ids = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)  # (n,)
    out = _launch(_gather_rows, [flat_ids, table], (flat_ids.shape[0], table.shape[1]),
                  table.dtype, (table.dtype.type(scale),), "embedding")
    return out.reshape(ids.shape + (table.shape[1],)).astype(weight.dtype)


def lm_head(h, embedding, output_weight, tied=False):
    h, w = lm_head_args(h, embedding, output_weight, tied)
    w = widen(w)  # (V, D)
    rows = widen(h).reshape(math.prod(h.shape[:-1]), h.shape[-1])  # (T, D); T or D may be 0
    out = _launch(_logits, [rows, w], (rows.shape[0], w.shape[0]), rows.dtype, what="lm_head")
    return out.reshape(h.shape[:-1] + (w.shape[0],)).astype(h.dtype)
