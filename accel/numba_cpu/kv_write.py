"""The paged KV write on numba-cpu (reference: llmref.ref.kv_write): the pools are copied, and
each new token's K and V rows are copied, as raw 16-bit words, to row slot_mapping[t] of the
copies viewed as (num_blocks * block_size, Hkv * D words) -- a bit-exact copy at every dtype
(llmref.accel.numba_cpu._rows.scatter_rows, in parallel). Checked by the reference's
kv_write_args (distinct slots, -1 for a padding token).

The pools are copied by NumPy: a new pool is memory never touched, and NumPy's one large copy
(glibc's memcpy) fills it faster than a row loop does, on one thread or two: 16 ms against
21-26 ms for 134 MB on the bench machine, while into memory already touched the row loop is
the faster (9.8 against 13.6 ms). The pool's page faults are most of a write's time.
"""
import math

import numpy as np

from llmref.accel.numba_cpu._rows import scatter_rows
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
        pool = np.array(cache, order="C")  # a C-contiguous copy
        scatter_rows(src.size, _words(np.ascontiguousarray(src), 1), slot_mapping.astype(np.int64),
                     _words(pool, 2))  # (T, W) into (slots, W)
        outputs.append(pool)
    return tuple(outputs)
