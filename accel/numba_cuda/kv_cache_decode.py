"""Decoding through a device-resident KV cache on numba-cuda (reference:
llmref.ref.kv_cache_decode): q, k, v and the preallocated cache stay on the device while a
server's loop runs, the prefill chunk and then one token per step; each step launches the
rope kernel for its keys (into the cache) and queries (into a rotated-query buffer), a copy
of its values into the value cache, and the online attention kernel for its queries over the
cache so far (bottom-right causal, key blocks of DECODE_KEY_BLOCK). Checked by the
reference's kv_cache_decode_args; the steps and float64 cos/sin tables are the reference's,
rounded once to the compute dtype; float16/bfloat16 inputs are widened to float32 on the host.
"""
import numpy as np
from numba import cuda

from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.accel.numba_cuda.online_attention import launch_online
from llmref.accel.numba_cuda.rope import rotate_kernel
from llmref.ref.kv_cache_decode import decode_rope_tables, decode_steps, kv_cache_decode_args

DECODE_KEY_BLOCK = 16  # keys per block of the online kernel when decoding through the cache


@cuda.jit
def _append_values(v, start, stop, cache):
    """cache[b, h, t] = v[b, h, t] for t in [start, stop); one thread per element."""
    e = cuda.grid(1)
    batch, heads, _, dim = v.shape
    steps = stop - start
    if e < batch * heads * steps * dim:
        b, h = e // (heads * steps * dim), (e // (steps * dim)) % heads
        t, d = start + (e // dim) % steps, e % dim
        cache[b, h, t, d] = v[b, h, t, d]


def kv_cache_decode(q, k, v, prefill_len=4, rope_base=10000.0):
    q, k, v, scale, prefill_len = kv_cache_decode_args(q, k, v, prefill_len, rope_base)
    acc, (batch, heads, length, dim) = compute_dtype(q.dtype), q.shape
    cos, sin = (cuda.to_device(np.ascontiguousarray(t[None], dtype=acc))  # (1, L, D/2)
                for t in decode_rope_tables(length, dim, rope_base))
    d_q, d_k, d_v = cuda.to_device(widen(q)), cuda.to_device(widen(k)), cuda.to_device(widen(v))
    cache_k = cuda.to_device(np.zeros(k.shape, dtype=acc))  # (B, Hkv, L, D), left to right
    cache_v = cuda.to_device(np.zeros(v.shape, dtype=acc))
    q_rot = cuda.to_device(np.zeros(q.shape, dtype=acc))
    keep = cuda.to_device(np.ones((batch, length), dtype=np.bool_))  # no padding
    out = Guarded(q.shape[:3] + (v.shape[3],), acc, "numba-cuda kv_cache_decode")
    lse = cuda.device_array(q.shape[:3], dtype=acc)  # (B, Hq, L), not returned
    for start, stop in decode_steps(prefill_len, length):
        step = slice(start, stop)
        kv_rows, q_rows = batch * k.shape[1] * (stop - start), batch * heads * (stop - start)
        rotate_kernel[grid(kv_rows), THREADS](d_k[:, :, step], cos[:, step], sin[:, step], False,
                                              cache_k[:, :, step])
        _append_values[grid(kv_rows * v.shape[3]), THREADS](d_v, start, stop, cache_v)
        rotate_kernel[grid(q_rows), THREADS](d_q[:, :, step], cos[:, step], sin[:, step], False,
                                             q_rot[:, :, step])
        launch_online(q_rot[:, :, step], cache_k[:, :, :stop], cache_v[:, :, :stop],
                      keep[:, :stop], out.device[:, :, step], lse[:, :, step], causal=True,
                      window=0, scale=scale, block_size=DECODE_KEY_BLOCK)
    return out.result().astype(q.dtype)
