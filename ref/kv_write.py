"""Writing new tokens' keys and values into a paged KV pool (specs/kv_write.yaml), vLLM's
reshape_and_cache: token t goes to slot slot_mapping[t] = block * block_size + offset of the
pools (num_blocks, block_size, Hkv, D); slot -1 marks a padding token. The pool layout:
llmref.ref._attention.
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref._attention import check_cache_pair
from llmref.validate import float_array, int_array


def kv_write(key, value, slot_mapping, k_cache, v_cache):
    """k_cache[s // bs, s % bs] = key[t], v_cache[...] = value[t] for s = slot_mapping[t];
    a slot of -1 marks a padding token, which is not written. Returns new pools."""
    key, value, slot_mapping, k_cache, v_cache = kv_write_args(key, value, slot_mapping,
                                                               k_cache, v_cache)
    block_size = k_cache.shape[1]
    k_out, v_out = k_cache.copy(), v_cache.copy()
    for t, slot in enumerate(slot_mapping.tolist()):
        if slot < 0:
            continue
        k_out[slot // block_size, slot % block_size] = key[t]
        v_out[slot // block_size, slot % block_size] = value[t]
    return k_out, v_out


def kv_write_args(key, value, slot_mapping, k_cache, v_cache):
    """Validate kv_write's arguments; returns them as arrays. Every backend checks through
    this. T = 0 new tokens is a valid call (the pools come back unchanged)."""
    k_cache, v_cache = check_cache_pair(k_cache, v_cache)
    num_blocks, block_size, hkv, d = k_cache.shape
    key = float_array("key", key, ndim=3)
    value = float_array("value", value, ndim=3)
    if key.shape[1:] != (hkv, d):
        raise InputError(f"key: shape {key.shape} does not match the cache's (T, {hkv}, {d})")
    if value.shape != key.shape:
        raise InputError(f"value: shape {value.shape} differs from key {key.shape}")
    if key.dtype != k_cache.dtype or value.dtype != k_cache.dtype:
        raise InputError(f"key: dtype {key.dtype} / value {value.dtype} differ from the pool's "
                         f"{k_cache.dtype} (the write stores the inputs' own bits)")
    slot_mapping = int_array("slot_mapping", slot_mapping, ndim=1, low=-1,
                             high=num_blocks * block_size)
    if slot_mapping.size != key.shape[0]:
        raise InputError(f"slot_mapping: has {slot_mapping.size} entries for {key.shape[0]} tokens")
    used = slot_mapping[slot_mapping >= 0]
    if np.unique(used).size != used.size:
        raise InputError("slot_mapping: a slot appears twice, so the write order would matter")
    return key, value, slot_mapping, k_cache, v_cache


# --- case generators (specs/kv_write.yaml) ---


def write_case(rng, T, Hkv, D, block_size, num_blocks, padding):
    """Case generator: T new tokens written to distinct random slots, `padding` of them -1."""
    slots = rng.permutation(num_blocks * block_size)[:T]
    slots[rng.permutation(T)[:padding]] = -1
    return {"key": rng.normal(size=(T, Hkv, D)), "value": rng.normal(size=(T, Hkv, D)),
            "slot_mapping": slots.astype(np.int64),
            "k_cache": rng.normal(size=(num_blocks, block_size, Hkv, D)),
            "v_cache": rng.normal(size=(num_blocks, block_size, Hkv, D))}
