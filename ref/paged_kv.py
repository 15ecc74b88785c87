"""Paged KV cache: block allocator, slot mapping, KV write and paged decode attention
(specs/paged_kv_allocator.yaml, specs/kv_write.yaml, specs/paged_attention_decode.yaml).

The KV cache of every sequence is cut into fixed-size blocks of `block_size` token slots.
A sequence's *block table* lists the physical block holding each of its logical blocks, so
token position `pos` lives in

    slot = block_table[pos // block_size] * block_size + pos % block_size

of a pool shaped (num_blocks, block_size, num_kv_heads, head_dim). Blocks are handed out by
a reference-counted allocator; forked sequences share blocks until one of them writes into a
shared, partially filled block (copy-on-write); full blocks can be found again by the hash of
their content and of everything before them (prefix caching), and unreferenced cached blocks
are evicted least-recently-freed first.
"""
import hashlib
import math
from collections import OrderedDict

import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array, int_array, positive

# Workload operations: one row (kind, seq, arg) each; see run_workload.
ARRIVE, APPEND, FORK, FREE = 0, 1, 2, 3
ROOT_HASH = b""  # the parent hash of a sequence's first block


class OutOfBlocks(Exception):
    """The free queue is empty; the operation asking for a block is rejected."""


def block_hash(parent_hash: bytes, tokens) -> bytes:
    """hash(parent_hash, tokens of the block) = SHA-256(parent_hash || tokens as int64 LE)."""
    data = np.asarray(tokens, dtype="<i8").tobytes()
    return hashlib.sha256(parent_hash + data).digest()


class BlockAllocator:
    """Physical blocks with reference counts, an LRU free queue and a hash -> block cache.

    State:
      ref_count[b]   sequences whose block table holds b
      free_queue     the blocks with ref_count 0, oldest-freed first (OrderedDict as a queue)
      cached[h]      the block holding the full block whose chain hash is h
      hash_of[b]     that hash for a cached block, None otherwise

    A free block may still be cached: its content stays valid until it is popped from the
    queue head for reuse, which evicts its hash (least recently freed is evicted first).
    """

    def __init__(self, num_blocks: int):
        self.num_blocks = num_blocks
        self.ref_count = [0] * num_blocks
        self.free_queue = OrderedDict((b, None) for b in range(num_blocks))
        self.cached = {}
        self.hash_of = [None] * num_blocks

    def num_free(self) -> int:
        return len(self.free_queue)

    def allocate(self) -> int:
        """Pop the least recently freed block, evicting its cached hash, with ref_count 1."""
        if not self.free_queue:
            raise OutOfBlocks
        block, _ = self.free_queue.popitem(last=False)
        if self.hash_of[block] is not None:
            del self.cached[self.hash_of[block]]
            self.hash_of[block] = None
        self.ref_count[block] = 1
        return block

    def share(self, block: int):
        """One more table holds `block` (fork, or a prefix-cache hit); leaves the free queue."""
        if self.ref_count[block] == 0:
            del self.free_queue[block]
        self.ref_count[block] += 1

    def release(self, block: int):
        """One table fewer holds `block`; at 0 it joins the free queue tail, still cached."""
        self.ref_count[block] -= 1
        if self.ref_count[block] == 0:
            self.free_queue[block] = None

    def lookup(self, h: bytes):
        """The cached block with chain hash h, or None."""
        return self.cached.get(h)

    def register(self, block: int, h: bytes):
        """Cache a block that just became full; a duplicate of a cached hash stays uncached."""
        if h not in self.cached:
            self.cached[h] = block
            self.hash_of[block] = h

    def check_invariants(self, tables):
        """Assert the allocator agrees with the block tables of the live sequences."""
        holders = [0] * self.num_blocks
        for table in tables:
            for b in table:
                holders[b] += 1
        assert holders == self.ref_count, "ref_count differs from the block tables"
        assert all(r >= 0 for r in self.ref_count), "negative ref_count"
        assert set(self.free_queue) == {b for b in range(self.num_blocks) if self.ref_count[b] == 0}, \
            "free queue is not exactly the unreferenced blocks"
        assert all(self.hash_of[b] == h for h, b in self.cached.items()), "cache and hash_of disagree"
        assert sum(h is not None for h in self.hash_of) == len(self.cached), "stale hash_of entry"


class PagedKVCache:
    """Sequences (block table, tokens, chain hashes of full blocks) over one allocator."""

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool):
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self.allocator = BlockAllocator(num_blocks)
        self.tables = {}   # seq -> [physical block per logical block]
        self.tokens = {}   # seq -> [token ids]
        self.hashes = {}   # seq -> [chain hash per full block]

    def slot(self, seq: int, pos: int) -> int:
        """slot = block_table[pos // block_size] * block_size + pos % block_size."""
        return self.tables[seq][pos // self.block_size] * self.block_size + pos % self.block_size

    def prefix_hits(self, prompt) -> list:
        """Cached blocks matching the prompt's leading full blocks, up to the first miss."""
        hits, parent = [], ROOT_HASH
        if not self.prefix_caching:
            return hits
        for start in range(0, len(prompt) - self.block_size + 1, self.block_size):
            parent = block_hash(parent, prompt[start:start + self.block_size])
            block = self.allocator.lookup(parent)
            if block is None:
                break
            hits.append(block)
        return hits

    def arrive(self, seq: int, prompt) -> tuple:
        """Allocate a new sequence's prompt; returns (slots, hit flags of its full blocks).

        Rejected (OutOfBlocks, nothing changed) when the free queue cannot supply the blocks
        that are not prefix-cache hits."""
        hits = self.prefix_hits(prompt)
        n_blocks = -(-len(prompt) // self.block_size)
        hits_taken_from_free = sum(self.allocator.ref_count[b] == 0 for b in hits)
        if self.allocator.num_free() - hits_taken_from_free < n_blocks - len(hits):
            raise OutOfBlocks
        self.tables[seq], self.tokens[seq], self.hashes[seq] = [], [], []
        for block in hits:
            self.allocator.share(block)
            self.tables[seq].append(block)
            self.hashes[seq].append(self.allocator.hash_of[block])
        self.tokens[seq] = list(prompt[:len(hits) * self.block_size])
        for token in prompt[len(hits) * self.block_size:]:
            self._write_token(seq, token)
        n_full = len(prompt) // self.block_size
        flags = [1] * len(hits) + [0] * (n_full - len(hits))
        return [self.slot(seq, pos) for pos in range(len(prompt))], flags

    def append(self, seq: int, token: int) -> int:
        """Append one token; returns its slot. May allocate (new block or copy-on-write)."""
        self._write_token(seq, token)
        return self.slot(seq, len(self.tokens[seq]) - 1)

    def _write_token(self, seq: int, token: int):
        table, pos = self.tables[seq], len(self.tokens[seq])
        if pos % self.block_size == 0:
            table.append(self.allocator.allocate())
        elif self.allocator.ref_count[table[-1]] > 1:  # shared partial block: copy on write
            new = self.allocator.allocate()
            self.allocator.release(table[-1])
            table[-1] = new
        self.tokens[seq].append(int(token))
        if (pos + 1) % self.block_size == 0:
            self._block_filled(seq)

    def _block_filled(self, seq: int):
        parent = self.hashes[seq][-1] if self.hashes[seq] else ROOT_HASH
        h = block_hash(parent, self.tokens[seq][-self.block_size:])
        self.hashes[seq].append(h)
        if self.prefix_caching:
            self.allocator.register(self.tables[seq][-1], h)

    def fork(self, child: int, parent: int):
        """The child shares every block of the parent (ref_count + 1 each)."""
        for block in self.tables[parent]:
            self.allocator.share(block)
        self.tables[child] = list(self.tables[parent])
        self.tokens[child] = list(self.tokens[parent])
        self.hashes[child] = list(self.hashes[parent])

    def free(self, seq: int) -> list:
        """Release the sequence's blocks last first (its least shareable blocks are then
        the first evicted); returns its final block table."""
        table = self.tables.pop(seq)
        for block in reversed(table):
            self.allocator.release(block)
        del self.tokens[seq], self.hashes[seq]
        return table

    def check_invariants(self):
        self.allocator.check_invariants(self.tables.values())
        for seq, table in self.tables.items():
            assert len(table) == -(-len(self.tokens[seq]) // self.block_size), f"seq {seq}: table length"


def check_workload(ops, tokens):
    """Validate a workload: ops (N, 3) rows (kind, seq, arg), tokens (T,) consumed in order."""
    ops = int_array("ops", ops, ndim=2)
    if ops.shape[1] != 3:
        raise InputError(f"ops: expected rows (kind, seq, arg), got shape {ops.shape}")
    int_array("ops", ops[:, 0], low=ARRIVE, high=FREE + 1)
    int_array("ops", ops[:, 1:], low=0)
    tokens = int_array("tokens", tokens, ndim=1, low=0)
    consumed = ops[(ops[:, 0] == ARRIVE) | (ops[:, 0] == APPEND), 2].sum()
    if consumed != tokens.size:
        raise InputError(f"tokens: ops consume {consumed} tokens but {tokens.size} are given")
    return ops, tokens


def run_workload(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True,
                 cache_class=PagedKVCache):
    """Replay a scripted workload on a PagedKVCache; record what it decided.

    ops rows (kind, seq, arg):
      ARRIVE (0)  seq arrives with a prompt of `arg` tokens (the next tokens of `tokens`)
      APPEND (1)  seq appends `arg` tokens, one at a time
      FORK   (2)  seq is forked from sequence `arg` (parallel sampling)
      FREE   (3)  seq finishes and releases its blocks
    An op is rejected (status 0, no state change beyond tokens already appended) when it
    names a sequence in the wrong state (ARRIVE/FORK of a live seq, others of a non-live seq)
    or when the free queue runs out. The invariants are checked after every op.
    cache_class lets a test (or a wrong variant) replay the workload on a modified cache.

    Returns
      slot_ids     (T,)  slot of each token of `tokens`, -1 where its op was rejected
      hits         (H,)  1/0 per full prompt block of every accepted ARRIVE (hit / miss)
      block_tables (S, M) each seq's table when freed (or at the end), -1 padded
      free_blocks  (N,)  free queue length after each op
      status       (N,)  1 accepted, 0 rejected
    """
    ops, tokens = check_workload(ops, tokens)
    positive("num_blocks", num_blocks)
    positive("block_size", block_size)
    cache = cache_class(int(num_blocks), int(block_size), bool(prefix_caching))
    slot_ids = np.full(tokens.size, -1, dtype=np.int64)
    hits, final_tables = [], {}
    free_blocks = np.zeros(len(ops), dtype=np.int32)
    status = np.zeros(len(ops), dtype=np.int32)
    cursor = 0
    for i, (kind, seq, arg) in enumerate(ops.tolist()):
        live = seq in cache.tables
        start, cursor = cursor, cursor + (arg if kind in (ARRIVE, APPEND) else 0)
        try:
            if kind == ARRIVE and not live:
                slots, flags = cache.arrive(seq, tokens[start:cursor].tolist())
                slot_ids[start:cursor] = slots
                hits += flags
            elif kind == APPEND and live:
                for t in range(start, cursor):
                    slot_ids[t] = cache.append(seq, int(tokens[t]))
            elif kind == FORK and not live and arg in cache.tables:
                cache.fork(seq, arg)
            elif kind == FREE and live:
                final_tables[seq] = cache.free(seq)
            else:
                raise OutOfBlocks  # wrong sequence state: rejected like an unsatisfiable op
            status[i] = 1
        except OutOfBlocks:
            status[i] = 0
        cache.check_invariants()
        free_blocks[i] = cache.allocator.num_free()
    final_tables.update(cache.tables)
    return {"slot_ids": slot_ids, "hits": np.array(hits, dtype=np.int32),
            "block_tables": pad_tables(final_tables, int(ops[:, 1].max()) + 1 if len(ops) else 0),
            "free_blocks": free_blocks, "status": status}


def pad_tables(tables: dict, num_seqs: int) -> np.ndarray:
    """{seq: [blocks]} -> (num_seqs, max_len) int32, -1 where a seq has no block."""
    width = max([len(t) for t in tables.values()] + [1])
    out = np.full((num_seqs, width), -1, dtype=np.int32)
    for seq, table in tables.items():
        out[seq, :len(table)] = table
    return out


def scripted_workload(rng, n_ops, vocab, prefix_len, shift):
    """Case generator: a random serving workload with shared prefixes, forks and frees.

    Prompts are a shared system prefix + a private tail (prefix-cache hits), a private head
    + a shared prefix, or a shared prefix without its first `shift` tokens (the same block
    contents at another position in the chain: with shift = block_size they must miss).
    """
    prefixes = [rng.integers(0, vocab, size=prefix_len) for _ in range(2)]
    live, next_seq, ops, tokens = [], 0, [], []
    for _ in range(n_ops):
        r = rng.random()
        if not live or (r < 0.3 and len(live) < 6):
            shared = prefixes[rng.integers(0, 2)]
            private = rng.integers(0, vocab, size=int(rng.integers(1, prefix_len)))
            kind = rng.random()
            parts = [shared, private] if kind < 0.6 else [private, shared] if kind < 0.8 \
                else [shared[shift:], private]
            prompt = np.concatenate(parts)
            ops.append((ARRIVE, next_seq, prompt.size))
            tokens.append(prompt)
            live.append(next_seq)
            next_seq += 1
        elif r < 0.65:
            n = int(rng.integers(1, 4))
            ops.append((APPEND, live[rng.integers(0, len(live))], n))
            tokens.append(rng.integers(0, vocab, size=n))
        elif r < 0.8:
            ops.append((FORK, next_seq, live[rng.integers(0, len(live))]))
            live.append(next_seq)
            next_seq += 1
        else:
            ops.append((FREE, live.pop(int(rng.integers(0, len(live)))), 0))
    return {"ops": np.array(ops, dtype=np.int64).reshape(-1, 3),
            "tokens": np.concatenate(tokens).astype(np.int64)}


def scripted_fork_free(rng):
    """Case generator: fork, free the parent, then ask for more blocks than are free -- the
    parent's blocks still held by the fork must not be handed out again."""
    prompt = rng.integers(0, 50, size=10)
    fresh = rng.integers(50, 100, size=1 + 24 + 3)
    ops = [(ARRIVE, 0, 10), (FORK, 1, 0), (APPEND, 1, 1), (FREE, 0, 0), (ARRIVE, 2, 24),
           (APPEND, 1, 3), (FREE, 1, 0), (ARRIVE, 3, 10), (FREE, 2, 0), (FREE, 3, 0),
           (ARRIVE, 4, 10)]
    tokens = np.concatenate([prompt, fresh, prompt, prompt])
    return {"ops": np.array(ops, dtype=np.int64), "tokens": tokens.astype(np.int64)}


def paged_kv_allocator(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """Spec entry point: the recorded decisions of run_workload."""
    out = run_workload(ops, tokens, num_blocks, block_size, prefix_caching)
    return out["slot_ids"], out["hits"], out["block_tables"], out["free_blocks"], out["status"]


# ----------------------------------------------------------------------------------------
# KV write and paged decode attention


def check_cache_pair(k_cache, v_cache):
    """k_cache, v_cache: (num_blocks, block_size, num_kv_heads, head_dim), same shape and dtype,
    every dim >= 1 (a pool without a slot, a head or a channel is an error)."""
    k_cache = float_array("k_cache", k_cache, ndim=4)
    v_cache = float_array("v_cache", v_cache, ndim=4)
    if min(k_cache.shape) == 0:
        raise InputError(f"k_cache: (num_blocks, block_size, num_kv_heads, head_dim) must all be "
                         f">= 1, got {k_cache.shape}")
    if v_cache.shape != k_cache.shape or v_cache.dtype != k_cache.dtype:
        raise InputError(f"v_cache: shape {v_cache.shape} {v_cache.dtype} differs from k_cache "
                         f"{k_cache.shape} {k_cache.dtype}")
    return k_cache, v_cache


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


def paged_attention_decode_args(q, k_cache, v_cache, block_tables, seq_lens, scale):
    """Validate paged_attention_decode's arguments; returns them and the resolved scale.
    Every backend checks through this before any kernel runs.

    Every block a sequence reads must exist: its table must have ceil(seq_len / block_size)
    entries, each in [0, num_blocks). A batch of 0 sequences is a valid call (empty output);
    0 query heads, 0 KV heads or a head width of 0 is an error."""
    k_cache, v_cache = check_cache_pair(k_cache, v_cache)
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
    positive("scale", scale, allow_zero=True)
    if scale == 0:
        scale = 1.0 / math.sqrt(d)
    return q, k_cache, v_cache, block_tables, seq_lens, float(scale)


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


def gather_cache(cache, block_table, seq_len):
    """(seq_len, Hkv, D) contiguous copy of one sequence's cached K or V (for baselines)."""
    block_size = cache.shape[1]
    n_blocks = -(-seq_len // block_size)
    return cache[np.asarray(block_table[:n_blocks])].reshape(-1, *cache.shape[2:])[:seq_len]


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


def write_case(rng, T, Hkv, D, block_size, num_blocks, padding):
    """Case generator: T new tokens written to distinct random slots, `padding` of them -1."""
    slots = rng.permutation(num_blocks * block_size)[:T]
    slots[rng.permutation(T)[:padding]] = -1
    return {"key": rng.normal(size=(T, Hkv, D)), "value": rng.normal(size=(T, Hkv, D)),
            "slot_mapping": slots.astype(np.int64),
            "k_cache": rng.normal(size=(num_blocks, block_size, Hkv, D)),
            "v_cache": rng.normal(size=(num_blocks, block_size, Hkv, D))}


# ----------------------------------------------------------------------------------------
# Memory accounting


def kv_memory_accounting(prompt_lens, output_lens, max_seq_len, block_size, bytes_per_token):
    """KV bytes reserved for a batch of requests, and the share holding real tokens.

    contiguous: every request reserves max_seq_len slots up front (max-length preallocation);
    pow2:       a request reserves the next power of two >= its final length (an allocator
                that knows the length in advance but rounds sizes, like Orca (Pow2));
    paged:      a request holds ceil((prompt + output) / block_size) blocks, so at most
                block_size - 1 slots of its last block are empty.
    used = sum(prompt + output) token slots in both cases.
    Returns a dict of byte counts and the fractions used / reserved.
    """
    prompt_lens = int_array("prompt_lens", prompt_lens, ndim=1, low=1)
    output_lens = int_array("output_lens", output_lens, ndim=1, low=1)
    if output_lens.size != prompt_lens.size:
        raise InputError(f"output_lens: {output_lens.size} entries for {prompt_lens.size} prompts")
    lengths = prompt_lens.astype(np.int64) + output_lens
    if lengths.max() > max_seq_len:
        raise InputError(f"max_seq_len: {max_seq_len} is below the longest request {lengths.max()}")
    used = int(lengths.sum()) * bytes_per_token
    contiguous = lengths.size * max_seq_len * bytes_per_token
    pow2 = int((2 ** np.ceil(np.log2(lengths))).sum()) * bytes_per_token
    paged = int((-(-lengths // block_size)).sum()) * block_size * bytes_per_token
    return {"used_bytes": used, "contiguous_bytes": contiguous, "pow2_bytes": pow2,
            "paged_bytes": paged, "contiguous_utilization": used / contiguous,
            "pow2_utilization": used / pow2, "paged_utilization": used / paged}
