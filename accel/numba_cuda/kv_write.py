"""The paged KV write on numba-cuda (reference: llmref.ref.kv_write): one thread per 16-bit
word of the new rows runs the shared scatter of llmref.accel.kernels.kv_write into a guarded
device copy of each pool, viewed as (num_blocks * block_size, Hkv * D words) -- a bit-exact
copy at every dtype. Checked by the reference's kv_write_args.
"""
import numpy as np
from numba import cuda

from llmref.accel.kernels import kv_write as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.kv_write import kv_write_args

_scatter_rows = cuda.jit(device=True)(kernels.scatter_rows)


@cuda.jit
def _scatter(src, slot_mapping, pool):
    _scatter_rows(src, slot_mapping, cuda.grid(1), cuda.gridsize(1), pool)


def _write_pool(src, slot_mapping, pool, what):
    """The pool with the rows of src scattered in, through a guarded device copy."""
    slots = pool.shape[0] * pool.shape[1]
    out = Guarded((slots, pool.nbytes // 2 // slots), np.uint16, what)  # (slots, W words)
    out.device.copy_to_device(np.ascontiguousarray(pool).view(np.uint16).reshape(out.shape))
    words = np.ascontiguousarray(src).view(np.uint16).reshape(src.shape[0], -1)  # (T, W)
    _scatter[grid(words.size), THREADS](cuda.to_device(words), cuda.to_device(slot_mapping),
                                        out.device)
    return out.result().view(pool.dtype).reshape(pool.shape)


def kv_write(key, value, slot_mapping, k_cache, v_cache):
    key, value, slot_mapping, k_cache, v_cache = kv_write_args(key, value, slot_mapping,
                                                               k_cache, v_cache)
    if key.shape[0] == 0:  # no new token: the pools unchanged
        return k_cache.copy(), v_cache.copy()
    slot_mapping = slot_mapping.astype(np.int64)
    return (_write_pool(key, slot_mapping, k_cache, "numba-cuda kv_write k"),
            _write_pool(value, slot_mapping, v_cache, "numba-cuda kv_write v"))
