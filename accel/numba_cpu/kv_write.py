"""The paged KV write on numba-cpu (reference: llmref.ref.kv_write): the pools are copied, and
each new token's K and V rows are copied, as raw 16-bit words, to row slot_mapping[t] of the
copies viewed as (num_blocks * block_size, Hkv * D words) -- a bit-exact copy at every dtype
(llmref.accel.numba_cpu._rows, both in parallel). Checked by the reference's kv_write_args
(distinct slots, -1 for a padding token).
"""
import math

import numpy as np

from llmref.accel.numba_cpu._rows import copy_rows, scatter_rows
from llmref.ref.kv_write import kv_write_args


def _words(a, lead):
    """Contiguous a as (rows, W) 16-bit words, a row per index of its first `lead` axes (a view)."""
    rows, width = math.prod(a.shape[:lead]), math.prod(a.shape[lead:]) * a.itemsize // 2
    return a.view(np.uint16).reshape(rows, width)


def kv_write(key, value, slot_mapping, k_cache, v_cache):
    key, value, slot_mapping, k_cache, v_cache = kv_write_args(key, value, slot_mapping,
                                                               k_cache, v_cache)
    outputs = []
    for src, cache in ((key, k_cache), (value, v_cache)):
        cache = np.ascontiguousarray(cache)
        pool = np.empty_like(cache)
        copy_rows(pool.size, _words(cache, 2), _words(pool, 2))  # (slots, W words) each
        scatter_rows(src.size, _words(np.ascontiguousarray(src), 1), slot_mapping.astype(np.int64),
                     _words(pool, 2))  # (T, W) into (slots, W)
        outputs.append(pool)
    return tuple(outputs)
