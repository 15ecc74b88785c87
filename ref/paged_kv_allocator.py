"""Paged KV cache block allocator (specs/paged_kv_allocator.yaml): block tables, reference
counts, copy-on-write forks, prefix caching with LRU eviction, replayed on a scripted
workload.

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
from collections import OrderedDict

import numpy as np

from llmref.errors import InputError
from llmref.validate import int_array, integer

# Workload operations: one row (kind, seq, arg) each; see run_workload.
ARRIVE, APPEND, FORK, FREE = 0, 1, 2, 3
ROOT_HASH = b""  # the parent hash of a sequence's first block


class OutOfBlocks(Exception):
    """Raised by PagedKVCache.arrive / append when the free queue cannot supply a block
    (nothing changed). run_workload asks can_arrive / can_append first and never sees it."""


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

    def can_arrive(self, prompt) -> bool:
        """Whether the free queue supplies the prompt's blocks that are not prefix-cache hits
        (hits taken from the free queue count against it)."""
        hits = self.prefix_hits(prompt)
        n_blocks = -(-len(prompt) // self.block_size)
        hits_taken_from_free = sum(self.allocator.ref_count[b] == 0 for b in hits)
        return self.allocator.num_free() - hits_taken_from_free >= n_blocks - len(hits)

    def arrive(self, seq: int, prompt) -> tuple:
        """Allocate a new sequence's prompt; returns (slots, hit flags of its full blocks).
        OutOfBlocks, nothing changed, unless can_arrive(prompt)."""
        if not self.can_arrive(prompt):
            raise OutOfBlocks
        hits = self.prefix_hits(prompt)
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

    def copies_on_write(self, seq: int) -> bool:
        """The next token goes into a partially filled block another table shares."""
        table, pos = self.tables[seq], len(self.tokens[seq])
        return pos % self.block_size != 0 and self.allocator.ref_count[table[-1]] > 1

    def can_append(self, seq: int) -> bool:
        """Whether the next token finds its slot: in the last block, or in a new block (at a
        block boundary, or for copy-on-write) that the free queue can supply."""
        needs_block = len(self.tokens[seq]) % self.block_size == 0 or self.copies_on_write(seq)
        return not needs_block or self.allocator.num_free() > 0

    def append(self, seq: int, token: int) -> int:
        """Append one token; returns its slot. OutOfBlocks, nothing changed, unless
        can_append(seq)."""
        self._write_token(seq, token)
        return self.slot(seq, len(self.tokens[seq]) - 1)

    def _write_token(self, seq: int, token: int):
        table, pos = self.tables[seq], len(self.tokens[seq])
        if pos % self.block_size == 0:
            table.append(self.allocator.allocate())
        elif self.copies_on_write(seq):
            new = self.allocator.allocate()
            self.allocator.release(table[-1])
            table[-1] = new
        self.tokens[seq].append(int(token))
        if (pos + 1) % self.block_size == 0:
            self.block_filled(seq)

    def block_filled(self, seq: int):
        """The last block just became full: its chain hash, registered for prefix caching."""
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


def paged_kv_allocator(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """Spec entry point: the recorded decisions of run_workload."""
    out = run_workload(ops, tokens, num_blocks=num_blocks, block_size=block_size,
                       prefix_caching=prefix_caching)
    return out["slot_ids"], out["hits"], out["block_tables"], out["free_blocks"], out["status"]


def paged_kv_allocator_args(ops, tokens, num_blocks, block_size):
    """Validated (ops (N, 3) rows (kind, seq, arg), tokens (T,) consumed in order, num_blocks,
    block_size)."""
    ops = int_array("ops", ops, ndim=2)
    if ops.shape[1] != 3:
        raise InputError(f"ops: expected rows (kind, seq, arg), got shape {ops.shape}")
    int_array("ops", ops[:, 0], low=ARRIVE, high=FREE + 1)
    int_array("ops", ops[:, 1:], low=0)
    tokens = int_array("tokens", tokens, ndim=1, low=0)
    consumed = ops[(ops[:, 0] == ARRIVE) | (ops[:, 0] == APPEND), 2].sum()
    if consumed != tokens.size:
        raise InputError(f"tokens: ops consume {consumed} tokens but {tokens.size} are given")
    return (ops, tokens, integer("num_blocks", num_blocks, low=1),
            integer("block_size", block_size, low=1))


def run_workload(ops, tokens, *, num_blocks=16, block_size=4, prefix_caching=True,
                 cache_class=PagedKVCache):
    """Replay a scripted workload on a PagedKVCache; record what it decided.

    ops rows (kind, seq, arg):
      ARRIVE (0)  seq arrives with a prompt of `arg` tokens (the next tokens of `tokens`)
      APPEND (1)  seq appends `arg` tokens, one at a time
      FORK   (2)  seq is forked from sequence `arg` (parallel sampling)
      FREE   (3)  seq finishes and releases its blocks
    Each sequence is either live or not: ARRIVE and FORK take a non-live seq to live (a FORK
    also needs a live parent), APPEND keeps a live one live, FREE makes it non-live. An op
    asked of a sequence in the other state, or needing more blocks than the free queue holds,
    is rejected (status 0): it changes nothing, except that an APPEND keeps the tokens it
    appended before the one that found no block. The invariants are checked after every op.
    cache_class lets a test (or a wrong variant) replay the workload on a modified cache.

    Returns
      slot_ids     (T,)  slot of each token of `tokens`, -1 where its op was rejected
      hits         (H,)  1/0 per full prompt block of every accepted ARRIVE (hit / miss)
      block_tables (S, M) each seq's table when freed (or at the end), -1 padded
      free_blocks  (N,)  free queue length after each op
      status       (N,)  1 accepted, 0 rejected
    """
    ops, tokens, num_blocks, block_size = paged_kv_allocator_args(ops, tokens, num_blocks,
                                                                  block_size)
    replay = Replay(cache_class(num_blocks, block_size, bool(prefix_caching)), tokens, len(ops))
    for i, (kind, seq, arg) in enumerate(ops.tolist()):
        replay.step(i, kind, seq, arg)
    final_tables = {**replay.final_tables, **replay.cache.tables}
    return {"slot_ids": replay.slot_ids, "hits": np.array(replay.hits, dtype=np.int32),
            "block_tables": pad_tables(final_tables, int(ops[:, 1].max()) + 1 if len(ops) else 0),
            "free_blocks": replay.free_blocks, "status": replay.status}


class Replay:
    """A workload being replayed: the cache, the token cursor, and what each op decided."""

    def __init__(self, cache: PagedKVCache, tokens, n_ops: int):
        self.cache, self.tokens, self.cursor = cache, tokens, 0
        self.slot_ids = np.full(tokens.size, -1, dtype=np.int64)
        self.hits, self.final_tables = [], {}
        self.free_blocks = np.zeros(n_ops, dtype=np.int32)
        self.status = np.zeros(n_ops, dtype=np.int32)

    def step(self, i, kind, seq, arg):
        """Apply op i where its sequence is in the state the op needs; record the decision.
        ARRIVE and APPEND consume their `arg` tokens even when rejected (slot_ids stay -1)."""
        live = seq in self.cache.tables
        span = self._take(arg) if kind in (ARRIVE, APPEND) else None
        if kind == ARRIVE:
            accepted = not live and self.arrive(seq, span)
        elif kind == APPEND:
            accepted = live and self.append(seq, span)
        elif kind == FORK:
            accepted = not live and arg in self.cache.tables and self.fork(seq, arg)
        else:  # FREE
            accepted = live and self.free(seq)
        self.status[i] = accepted
        self.cache.check_invariants()
        self.free_blocks[i] = self.cache.allocator.num_free()

    def _take(self, n) -> range:
        """The positions in `tokens` of the op's next n tokens."""
        span = range(self.cursor, self.cursor + n)
        self.cursor += n
        return span

    def arrive(self, seq, span) -> bool:
        prompt = self.tokens[span.start:span.stop].tolist()
        if not self.cache.can_arrive(prompt):
            return False
        slots, flags = self.cache.arrive(seq, prompt)
        self.slot_ids[span.start:span.stop] = slots
        self.hits += flags
        return True

    def append(self, seq, span) -> bool:
        for t in span:
            if not self.cache.can_append(seq):
                return False  # the tokens before t stay appended
            self.slot_ids[t] = self.cache.append(seq, int(self.tokens[t]))
        return True

    def fork(self, child, parent) -> bool:
        self.cache.fork(child, parent)
        return True

    def free(self, seq) -> bool:
        self.final_tables[seq] = self.cache.free(seq)
        return True


def pad_tables(tables: dict, num_seqs: int) -> np.ndarray:
    """{seq: [blocks]} -> (num_seqs, max_len) int32, -1 where a seq has no block."""
    width = max([len(t) for t in tables.values()] + [1])
    out = np.full((num_seqs, width), -1, dtype=np.int32)
    for seq, table in tables.items():
        out[seq, :len(table)] = table
    return out


# --- case generators (specs/paged_kv_allocator.yaml) ---


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
