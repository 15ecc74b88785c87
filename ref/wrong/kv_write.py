"""Wrong kv_write variants seen in the wild; each must fail its audit."""
import numpy as np


def kv_write_slot_transposed(key, value, slot_mapping, k_cache, v_cache):
    """Decomposes slot s as (block = s % num_blocks, offset = s // num_blocks): the pool
    indexed as (block_size, num_blocks) instead of (num_blocks, block_size)."""
    num_blocks = k_cache.shape[0]
    k_out, v_out = k_cache.copy(), v_cache.copy()
    for t, slot in enumerate(np.asarray(slot_mapping).tolist()):
        if slot >= 0:
            k_out[slot % num_blocks, slot // num_blocks] = key[t]
            v_out[slot % num_blocks, slot // num_blocks] = value[t]
    return k_out, v_out


def kv_write_padding_written(key, value, slot_mapping, k_cache, v_cache):
    """Does not skip padding tokens: slot -1 wraps around to the pool's last slot."""
    block_size = k_cache.shape[1]
    k_out, v_out = k_cache.copy(), v_cache.copy()
    for t, slot in enumerate(np.asarray(slot_mapping).tolist()):
        k_out[slot // block_size, slot % block_size] = key[t]
        v_out[slot // block_size, slot % block_size] = value[t]
    return k_out, v_out
