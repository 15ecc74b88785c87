"""Paged decode attention through the CUDA C kernels of paged_attention_decode.cu
(reference: llmref.ref.paged_attention_decode).

`paged_attention_decode` takes and returns NumPy arrays like the reference;
`decode_on_device` runs the kernels on arrays already on the GPU (the benchmark uses it).
Arguments are checked by the reference's paged_attention_decode_args before any kernel runs.
Unlike the numba backends, the CUDA C kernel splits long contexts into partitions (split-K)
when the sequences and heads alone leave SMs idle, merging the partial states exactly.
"""
import math
from functools import lru_cache

import numpy as np

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel.cupy._module import raw_module
from llmref.dtypes import SHORT
from llmref.ref.paged_attention_decode import paged_attention_decode_args
from llmref.validate import integer

SOURCE = "paged_attention_decode.cu"
THREADS = 128      # NUM_THREADS in paged_attention_decode.cu
GROUP_TILE = 8     # query heads per thread block, GROUP_TILE in paged_attention_decode.cu
DTYPES = ("float32", "float16", "bfloat16")


def dims_per_lane(head_dim: int) -> int:
    """Elements of a K/V row each of a warp's 32 lanes loads (the kernel variant)."""
    for dpl in (1, 2, 4, 8):
        if 32 * dpl >= head_dim:
            return dpl
    raise NotImplementedError(f"cupy paged decode supports head_dim <= 256, got {head_dim}")


def choose_partition_size(batch, hkv, group, max_seq_len, block_size, sm_count):
    """Split-K only when (sequences x KV heads x head tiles) leaves SMs idle: then enough
    partitions (of at least 256 tokens, whole blocks) to give every SM about two blocks."""
    blocks = batch * hkv * math.ceil(group / GROUP_TILE)
    parts = max(1, min(math.ceil(2 * sm_count / blocks), math.ceil(max_seq_len / 256)))
    size = math.ceil(max_seq_len / parts)
    return math.ceil(size / block_size) * block_size


@lru_cache(maxsize=None)
def sm_count(device_id: int) -> int:
    import cupy

    return cupy.cuda.Device(device_id).attributes["MultiProcessorCount"]


def device_bits(x):
    """A host array on the device: half-precision floats as their uint16 bit patterns."""
    import cupy

    x = np.ascontiguousarray(x)
    return cupy.asarray(x.view(np.uint16) if x.dtype.itemsize == 2 else x)


def decode_on_device(q, k_cache, v_cache, block_tables, seq_lens, out, *, dtype, scale,
                     max_seq_len, partition_size=None):
    """Launch the decode (and, for more than one partition, the merge) kernel.

    q (B, Hq, D), k_cache/v_cache (num_blocks, bs, Hkv, D) device arrays of `dtype`
    ('float32', 'float16', 'bfloat16'; half types as uint16 bits), block_tables (B, max_blocks)
    int32, seq_lens (B,) int32, out a device buffer of B*Hq*D elements. The caller has
    validated the arguments (paged_attention_decode_args) and partition_size (an integer
    >= 1, or None to choose one)."""
    import cupy

    batch, hq, d = q.shape
    block_size, hkv = k_cache.shape[1], k_cache.shape[2]
    group = hq // hkv
    if partition_size is None:
        partition_size = choose_partition_size(batch, hkv, group, max_seq_len, block_size,
                                               sm_count(cupy.cuda.Device().id))
    max_parts = math.ceil(max_seq_len / partition_size)
    part_out = cupy.empty(batch * hq * max_parts * d if max_parts > 1 else 1, dtype=cupy.float32)
    part_lse = cupy.empty(batch * hq * max_parts if max_parts > 1 else 1, dtype=cupy.float32)
    module = raw_module(SOURCE)
    decode = module.get_function(f"paged_decode_{SHORT[dtype]}_d{dims_per_lane(d)}")
    grid = (max_parts, hkv * math.ceil(group / GROUP_TILE), batch)
    decode(grid, (THREADS,), (q, k_cache, v_cache, block_tables, seq_lens, out, part_out, part_lse,
                              np.int32(hq), np.int32(hkv), np.int32(d), np.int32(block_size),
                              np.int32(block_tables.shape[1]), np.int32(partition_size),
                              np.int32(max_parts), np.float32(scale)))
    if max_parts > 1:
        merge = module.get_function(f"paged_decode_merge_{SHORT[dtype]}")
        merge((hq, batch), (THREADS,), (part_out, part_lse, seq_lens, out, np.int32(hq), np.int32(d),
                                        np.int32(partition_size), np.int32(max_parts)))
    return max_parts


def paged_attention_decode(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0,
                           partition_size=None):
    """Spec entry point; partition_size forces a split-K partition length (tests)."""
    q, k_cache, v_cache, block_tables, seq_lens, scale = paged_attention_decode_args(
        q, k_cache, v_cache, block_tables, seq_lens, scale)
    if partition_size is not None:  # a test knob of this backend, not a spec param
        partition_size = integer("partition_size", partition_size, low=1)
    if q.shape[0] == 0:  # no sequence: an empty output
        return q.copy()
    dtype = str(q.dtype)
    if dtype not in DTYPES or k_cache.dtype != q.dtype:
        raise NotImplementedError("cupy paged decode takes float32, float16 or bfloat16 q and caches "
                                  "of the same dtype")
    import cupy
    dq = device_bits(q)
    buf = cupy.asarray(guarded_host_buffer(q.size, dq.dtype))
    decode_on_device(dq, device_bits(k_cache), device_bits(v_cache),
                     cupy.asarray(block_tables, dtype=cupy.int32), cupy.asarray(seq_lens, dtype=cupy.int32),
                     interior(buf, q.size), dtype=dtype, scale=scale,
                     max_seq_len=int(seq_lens.max()), partition_size=partition_size)
    host = cupy.asnumpy(buf)
    check_guards(host, q.size, "cupy paged_attention_decode")
    return interior(host, q.size).view(q.dtype).reshape(q.shape)
