"""The paged KV write on numba-cpu (reference: llmref.ref.kv_write): the shared scatter of
llmref.accel.kernels.kv_write copies each new token's K and V rows, as raw 16-bit words, to
row slot_mapping[t] of the pools viewed as (num_blocks * block_size, Hkv * D words) -- a
bit-exact copy at every dtype. Checked by the reference's kv_write_args.
"""
import numba
import numpy as np

from llmref.accel.kernels import kv_write as kernels
from llmref.ref.kv_write import kv_write_args

_scatter_rows = numba.njit(cache=True)(kernels.scatter_rows)


def kv_write(key, value, slot_mapping, k_cache, v_cache):
    key, value, slot_mapping, k_cache, v_cache = kv_write_args(key, value, slot_mapping,
                                                               k_cache, v_cache)
    if key.shape[0] == 0:  # no new token: the pools unchanged
        return k_cache.copy(), v_cache.copy()
    slots = k_cache.shape[0] * k_cache.shape[1]
    k_out, v_out = k_cache.copy(), v_cache.copy()
    for src, pool in ((key, k_out), (value, v_out)):
        words = np.ascontiguousarray(src).view(np.uint16).reshape(src.shape[0], -1)  # (T, W)
        _scatter_rows(words, slot_mapping.astype(np.int64), 0, 1,
                      pool.view(np.uint16).reshape(slots, -1))  # (slots, W words), a view
    return k_out, v_out
