"""The paged KV write through the CUDA C kernels of kv_write.cu (reference:
llmref.ref.kv_write): a bit-exact scatter of each new token's K and V rows into guarded
device copies of the pools, in 16-byte words when a row is a whole number of them, else in
2-byte words. Arguments are checked by the reference's kv_write_args before any kernel runs.
"""
import numpy as np

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel.cupy._module import raw_module
from llmref.ref.kv_write import kv_write_args

SOURCE = "kv_write.cu"
THREADS = 128  # threads per block: one block per new token, the threads over its row's words


def _write_pool(src, slot_mapping, pool, what):
    """Scatter src rows into a guarded device copy of the pool; 16-byte words when rows allow."""
    import cupy

    words = pool.nbytes // 2
    row_bytes = src.nbytes // src.shape[0]
    buf = guarded_host_buffer(words, np.uint16)
    interior(buf, words)[:] = np.ascontiguousarray(pool).view(np.uint16).reshape(-1)
    d_buf = cupy.asarray(buf)
    wide = row_bytes % 16 == 0
    kernel = raw_module(SOURCE).get_function("kv_write_u128" if wide else "kv_write_u16")
    d_src = cupy.asarray(np.ascontiguousarray(src).view(np.uint16))
    kernel((src.shape[0],), (THREADS,), (d_src, slot_mapping, interior(d_buf, words),
                                         np.int32(row_bytes // (16 if wide else 2))))
    host = cupy.asnumpy(d_buf)
    check_guards(host, words, what)
    return interior(host, words).view(pool.dtype).reshape(pool.shape)


def kv_write(key, value, slot_mapping, k_cache, v_cache):
    key, value, slot_mapping, k_cache, v_cache = kv_write_args(key, value, slot_mapping,
                                                               k_cache, v_cache)
    if key.shape[0] == 0:  # no new token: the pools unchanged
        return k_cache.copy(), v_cache.copy()
    import cupy

    slots = cupy.asarray(slot_mapping, dtype=cupy.int64)
    return (_write_pool(key, slots, k_cache, "cupy kv_write k"),
            _write_pool(value, slots, v_cache, "cupy kv_write v"))
