"""Online (flash-style) attention on numba-cuda (reference: llmref.ref.online_attention):
one thread per query row runs the shared row math of llmref.accel.kernels.online_attention,
key block by key block, with its own row of a scratch buffer for the block's scores.
Checked by the reference's online_attention_args; float16/bfloat16 inputs are widened to
float32 on the host, every running quantity is held in the compute dtype, the result rounded
once.
"""
import numpy as np
from numba import cuda

from llmref.accel._host import compute_dtype, widen
from llmref.accel.kernels import online_attention as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.online_attention import online_attention_args

_online_rows = cuda.jit(device=True)(kernels.online_rows)


@cuda.jit
def _online(q, k, v, keep_key, causal, window, scale, zero, neg_inf, scores, out, lse):
    """One grid-stride of query rows per thread (launched by launch_online)."""
    _online_rows(q, k, v, keep_key, causal, window, scale, zero, neg_inf, cuda.grid(1),
                 cuda.gridsize(1), scores, out, lse)


def launch_online(q, k, v, keep_key, out, lse, *, causal, window, scale, block_size):
    """Run the online kernel on device arrays, one thread per query row of q (B, Hq, Lq, D),
    each with its own scratch row of block_size scores; out and lse in the compute dtype.
    sdpa and kv_cache_decode launch it too."""
    acc = np.dtype(out.dtype)
    blocks = grid(np.prod(q.shape[:3]))
    scores = cuda.device_array((blocks * THREADS, block_size), dtype=acc)
    _online[blocks, THREADS](q, k, v, keep_key, bool(causal), int(window), acc.type(scale),
                             acc.type(0), acc.type(-np.inf), scores, out, lse)


def online_attention(q, k, v, key_padding_mask, causal=False, window=0, scale=0.0, block_size=4):
    q, k, v, key_padding_mask, scale, block_size = online_attention_args(
        q, k, v, key_padding_mask, window, scale, block_size)
    acc = compute_dtype(q.dtype)
    out = Guarded(q.shape[:3] + (v.shape[3],), acc, "numba-cuda online_attention out")
    lse = Guarded(q.shape[:3], acc, "numba-cuda online_attention lse")  # (B, Hq, Lq)
    launch_online(cuda.to_device(widen(q)), cuda.to_device(widen(k)), cuda.to_device(widen(v)),
                  cuda.to_device(np.ascontiguousarray(key_padding_mask)), out.device, lse.device,
                  causal=causal, window=window, scale=scale, block_size=block_size)
    return out.result().astype(q.dtype), lse.result().astype(q.dtype)
