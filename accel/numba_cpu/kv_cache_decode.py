"""Decoding through a KV cache on numba-cpu (reference: llmref.ref.kv_cache_decode): a
server's loop, the prefill chunk and then one token per step, each step rotating its queries
and keys by rotate-half RoPE at their positions (the rope kernel), appending keys and values
to a preallocated cache, and attending its queries over the cache so far, bottom-right
causal. A step of more than BLAS_WORK multiply-adds (the prefill, and decode steps of many
heads or long caches) is the blocked attention of sdpa (llmref.accel.numba_cpu._attention:
BLAS products, each KV head's group of query heads stacked so a key is read once per group);
a smaller one is the online attention kernel, key blocks of DECODE_KEY_BLOCK, its query rows
dealt to TASKS tasks, which take the threads when the step is large enough
(llmref.accel.numba_cpu._threads): a blocked call costs about 40 us a step in dispatch,
the row kernel about 0.9 ns a multiply-add (a 512-token prefill and 256 decode steps of 32
query heads over 8 KV heads, dim 128, one core: 1.10 s with the row kernel throughout,
0.29 s so). Checked by the reference's kv_cache_decode_args; the
steps and float64 cos/sin tables are the reference's, rounded once to the compute dtype;
float16/bfloat16 inputs are widened to float32.
"""
import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cpu._attention import blocked_attention
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.accel.numba_cpu.online_attention import online_rows
from llmref.accel.numba_cpu.rope import rotate_rows
from llmref.ref.kv_cache_decode import decode_rope_tables, decode_steps, kv_cache_decode_args

DECODE_KEY_BLOCK = 16  # keys per block of the online kernel when decoding through the cache
TASKS = 16  # parallel tasks a step's query rows are dealt to (a decode step has B * Hq rows)
BLAS_WORK = 1 << 16  # multiply-adds of a step above which its products go to BLAS


@threaded_loop()
def _attend_step(q_rot, cache_k, cache_v, keep, start, stop, scale, zero, neg_inf, scores, out, lse):
    """online_rows of one step, the queries at positions start..stop-1 over the keys and values
    0..stop-1, bottom-right causal, its query rows dealt round-robin to scores.shape[0]
    parallel tasks, task t using scratch row scores[t]. The step's views are sliced here, so
    they have one layout whatever the step (sliced by the caller, the last step's views of
    the whole cache are contiguous and the others are not: a second compilation of the kernel,
    3.3 s)."""
    q, k, v, valid = q_rot[:, :, start:stop], cache_k[:, :, :stop], cache_v[:, :, :stop], keep[:, :stop]
    step_out, step_lse = out[:, :, start:stop], lse[:, :, start:stop]
    for task in numba.prange(scores.shape[0]):  # uint64 in the parfor body: as int64, one compile
        online_rows(q, k, v, valid, True, 0, scale, zero, neg_inf, np.int64(task), scores.shape[0], scores,
                    step_out, step_lse)


def kv_cache_decode(q, k, v, prefill_len=4, rope_base=10000.0):
    q, k, v, scale, prefill_len = kv_cache_decode_args(q, k, v, prefill_len, rope_base)
    acc, (batch, _, length, dim) = compute_dtype(q.dtype), q.shape
    cos, sin = (np.ascontiguousarray(t[None], dtype=acc)  # (1, L, D/2): shared by the batch
                for t in decode_rope_tables(length, dim, rope_base))
    wq, wk, wv = widen(q), widen(k), widen(v)
    cache_k, cache_v = np.zeros(k.shape, dtype=acc), np.zeros(v.shape, dtype=acc)  # left to right
    q_rot = np.zeros(q.shape, dtype=acc)
    keep = np.ones((batch, length), dtype=np.bool_)  # no padding
    out = np.empty(q.shape[:3] + (v.shape[3],), dtype=acc)  # (B, Hq, L, Dv)
    lse = np.empty(q.shape[:3], dtype=acc)  # (B, Hq, L), not returned
    scores = np.empty((TASKS, DECODE_KEY_BLOCK), dtype=acc)
    for start, stop in decode_steps(prefill_len, length):
        step = slice(start, stop)
        rotate_rows(wk[:, :, step], cos[:, step], sin[:, step], False, 0, 1, cache_k[:, :, step])
        cache_v[:, :, step] = wv[:, :, step]
        rotate_rows(wq[:, :, step], cos[:, step], sin[:, step], False, 0, 1, q_rot[:, :, step])
        work = batch * q.shape[1] * (stop - start) * stop * dim  # the step's multiply-adds
        if work > BLAS_WORK:
            out[:, :, step], _ = blocked_attention(np.ascontiguousarray(q_rot[:, :, step]),  # (B, Hq, T, D)
                                                   np.ascontiguousarray(cache_k[:, :, :stop]),  # (B, Hkv, S, D)
                                                   np.ascontiguousarray(cache_v[:, :, :stop]),
                                                   keep[:, :stop], True, 0, scale)
        else:
            _attend_step(work, q_rot, cache_k, cache_v, keep, start, stop, acc.type(scale), acc.type(0),
                         acc.type(-np.inf), scores, out, lse)
    return out.astype(q.dtype, copy=False)
