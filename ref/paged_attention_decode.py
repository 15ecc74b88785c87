"""Decode attention over a paged KV cache (specs/paged_attention_decode.yaml): one query token
per sequence attending to its whole context, read through the sequence's block table from
the pools (num_blocks, block_size, Hkv, D). The pool layout: llmref.ref._attention.
"""
import math

import numpy as np

from llmref.errors import InputError
from llmref.ref._attention import check_cache_pair
from llmref.validate import float_array, int_array, positive


def paged_attention_decode(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    """One query token per sequence attending to its whole cached context.

    For sequence b, query head h and KV head g = h // (Hq / Hkv) (GQA repeats each KV head
    for Hq / Hkv consecutive query heads):
        k_j = k_cache[block_tables[b, j // bs], j % bs, g]      j < seq_lens[b]
        s_j = scale * q[b, h] . k_j,   p = softmax(s),   out[b, h] = sum_j p_j v_j
    scale = 0 (the default) means 1/sqrt(head_dim). Computed in the precision of the inputs.
    """
    q, k_cache, v_cache, block_tables, seq_lens, scale = paged_attention_decode_args(
        q, k_cache, v_cache, block_tables, seq_lens, scale)
    batch, hq, d = q.shape
    block_size, hkv = k_cache.shape[1], k_cache.shape[2]
    group = hq // hkv
    out = np.empty_like(q)
    for b in range(batch):
        n = int(seq_lens[b])
        k = np.empty((n, hkv, d), dtype=k_cache.dtype)  # this sequence's keys, token order
        v = np.empty((n, hkv, d), dtype=v_cache.dtype)
        for j in range(n):
            block, offset = block_tables[b, j // block_size], j % block_size
            k[j], v[j] = k_cache[block, offset], v_cache[block, offset]
        for h in range(hq):
            g = h // group
            s = (k[:, g, :] @ q[b, h]) * q.dtype.type(scale)  # (n,)
            p = np.exp(s - s.max())
            out[b, h] = (p @ v[:, g, :]) / p.sum()
    return out


def paged_attention_decode_args(q, k_cache, v_cache, block_tables, seq_lens, scale, pool_values=True):
    """Validate paged_attention_decode's arguments; returns them and the resolved scale.
    Every backend checks through this before any kernel runs.

    Every block a sequence reads must exist: its table must have ceil(seq_len / block_size)
    entries, each in [0, num_blocks). A batch of 0 sequences is a valid call (empty output);
    0 query heads, 0 KV heads or a head width of 0 is an error. NaN and inf are errors in
    the rows the batch reads, and only there (check_read_rows). With pool_values=False
    those rows are left to the caller, whose kernel reads them anyway: it must run
    check_read_rows whenever a score or an output it computed is not finite."""
    k_cache, v_cache = check_cache_pair(k_cache, v_cache, values=False)
    num_blocks, block_size, hkv, d = k_cache.shape
    q = float_array("q", q, ndim=3)
    batch, hq, qd = q.shape
    if hq == 0:
        raise InputError(f"q: needs at least one query head, got shape {q.shape}")
    if qd != d:
        raise InputError(f"q: head_dim {qd} differs from the cache's {d}")
    if hq % hkv != 0:
        raise InputError(f"q: {hq} query heads are not a multiple of the cache's {hkv} KV heads")
    block_tables = int_array("block_tables", block_tables, ndim=2)
    seq_lens = int_array("seq_lens", seq_lens, ndim=1, low=1)
    if block_tables.shape[0] != batch or seq_lens.size != batch:
        raise InputError(f"block_tables: {block_tables.shape[0]} rows and seq_lens: {seq_lens.size} "
                         f"entries, but q has batch {batch}")
    needed = -(-seq_lens // block_size)  # blocks each sequence reads
    if needed.max(initial=0) > block_tables.shape[1]:
        raise InputError(f"block_tables: {block_tables.shape[1]} columns, but a sequence of "
                         f"{seq_lens.max()} tokens needs {needed.max()} blocks of {block_size}")
    for b in range(batch):
        int_array("block_tables", block_tables[b, :needed[b]], low=0, high=num_blocks)
    if pool_values:
        check_read_rows("k_cache", k_cache, block_tables, seq_lens)
        check_read_rows("v_cache", v_cache, block_tables, seq_lens)
    positive("scale", scale, allow_zero=True)
    if scale == 0:
        scale = 1.0 / math.sqrt(d)
    return q, k_cache, v_cache, block_tables, seq_lens, float(scale)


def check_read_rows(name, cache, block_tables, seq_lens, chunk_bytes=1 << 22):
    """No NaN or inf in the rows the batch reads -- slots j < seq_lens[b] of the blocks
    block_tables[b, j // block_size] -- and no look anywhere else. The rest of a serving pool
    is memory no sequence has written (vLLM allocates its pools with torch.empty), so a NaN
    there is no error; and a pool is far larger than the batch, so only what is read is
    checked: the blocks read whole, a few at a time (chunk_bytes of them), then each
    sequence's partial last block."""
    block_size = cache.shape[1]
    whole = seq_lens // block_size  # blocks each sequence reads whole
    blocks = np.unique(block_tables[np.arange(block_tables.shape[1]) < whole[:, None]])
    per_chunk = max(1, chunk_bytes // (cache[0].nbytes or 1))
    for start in range(0, blocks.size, per_chunk):
        float_array(name, cache[blocks[start:start + per_chunk]])
    for b in np.flatnonzero(seq_lens % block_size):
        float_array(name, cache[block_tables[b, whole[b]], :seq_lens[b] % block_size])


# --- case generators (specs/paged_attention_decode.yaml) ---


def decode_case(rng, B, Hq, Hkv, D, block_size, num_blocks, max_len):
    """Case generator: vLLM-style random, non-monotone block tables (blocks may repeat across
    sequences), random lengths in [1, max_len] with the last sequence at max_len, and a pool
    filled everywhere so reading an unwritten slot changes the answer."""
    max_blocks = -(-max_len // block_size)
    seq_lens = rng.integers(1, max_len + 1, size=B)
    seq_lens[-1] = max_len
    return {"q": rng.normal(size=(B, Hq, D)),
            "k_cache": rng.normal(size=(num_blocks, block_size, Hkv, D)),
            "v_cache": rng.normal(size=(num_blocks, block_size, Hkv, D)),
            "block_tables": rng.integers(0, num_blocks, size=(B, max_blocks)).astype(np.int32),
            "seq_lens": seq_lens.astype(np.int32)}


# --- invariants (specs/paged_attention_decode.yaml) ---


def invariant_block_permutation(fn, spec, case, at, dtype):
    """Renaming the physical blocks -- the pools' rows permuted, every block table mapped the
    same way -- changes no value a sequence reads, nor their order: the outputs agree."""
    from llmref.invariants import agree, run

    inputs = at.inputs
    perm = np.random.default_rng(0).permutation(inputs["k_cache"].shape[0])  # block j -> perm[j]
    moved = dict(inputs, k_cache=np.empty_like(inputs["k_cache"]), v_cache=np.empty_like(inputs["v_cache"]),
                 block_tables=perm[inputs["block_tables"]].astype(inputs["block_tables"].dtype))
    moved["k_cache"][perm], moved["v_cache"][perm] = inputs["k_cache"], inputs["v_cache"]
    return agree(spec, case, dtype, run(fn, spec, inputs, case.params), run(fn, spec, moved, case.params))


def invariant_unread_rows_ignored(fn, spec, case, at, dtype):
    """NaN in every row of the pools that no sequence reads -- the blocks outside the tables'
    read entries and the slots past each sequence's end in its last block -- changes no
    output: an implementation that reads past a length, or masks a whole block by
    multiplying, turns a serving pool's unwritten memory into NaN here."""
    from llmref.invariants import agree, run

    inputs = at.inputs
    read = read_rows(inputs["block_tables"], inputs["seq_lens"], inputs["k_cache"].shape[:2])
    if read.all():
        return None, "every row of the pool is read"
    dirty = dict(inputs, k_cache=inputs["k_cache"].copy(), v_cache=inputs["v_cache"].copy())
    dirty["k_cache"][~read] = np.nan
    dirty["v_cache"][~read] = np.nan
    return agree(spec, case, dtype, run(fn, spec, inputs, case.params), run(fn, spec, dirty, case.params))


def read_rows(block_tables, seq_lens, pool_shape):
    """(num_blocks, block_size) bool: which (block, slot) rows some sequence reads."""
    block_size = pool_shape[1]
    read = np.zeros(pool_shape, dtype=bool)
    for b, n in enumerate(seq_lens):
        j = np.arange(int(n))
        read[block_tables[b, j // block_size], j % block_size] = True
    return read


def invariant_block_size(fn, spec, case, at, dtype):
    """The same contexts laid out in pools of block size 8, 16 and 32, in shuffled physical
    order, with every slot past a sequence's end holding 1e3 (so reading one shows): the
    outputs agree with the case's own layout."""
    from llmref.invariants import agree, run

    base = run(fn, spec, at.inputs, case.params)
    for block_size in (8, 16, 32):
        moved = relayout(at.inputs, block_size, np.random.default_rng(block_size))
        ok, detail = agree(spec, case, dtype, base, run(fn, spec, moved, case.params))
        if not ok:
            return False, f"block size {block_size}: {detail}"
    return True, ""


def relayout(inputs, block_size, rng):
    """The inputs with each sequence's keys and values copied into fresh pools of
    `block_size`, its blocks at random physical positions."""
    k_cache, v_cache, tables, lens = (inputs[n] for n in ("k_cache", "v_cache", "block_tables", "seq_lens"))
    old = k_cache.shape[1]
    needed = [-(-int(n) // block_size) for n in lens]
    physical = rng.permutation(max(sum(needed), 1))
    shape = (physical.size, block_size) + k_cache.shape[2:]  # (NB', BS', Hkv, D)
    new_k = np.full(shape, 1e3).astype(k_cache.dtype)
    new_v = np.full(shape, 1e3).astype(v_cache.dtype)
    new_tables = np.zeros((len(lens), max(needed, default=1)), dtype=tables.dtype)
    start = 0
    for b, n in enumerate(lens):
        new_tables[b, :needed[b]] = physical[start:start + needed[b]]
        start += needed[b]
        for j in range(int(n)):
            src = (tables[b, j // old], j % old)
            dst = (new_tables[b, j // block_size], j % block_size)
            new_k[dst], new_v[dst] = k_cache[src], v_cache[src]
    return dict(inputs, k_cache=new_k, v_cache=new_v, block_tables=new_tables)

