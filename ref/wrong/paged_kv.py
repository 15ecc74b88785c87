"""Wrong paged-KV variants seen in the wild; each must fail its audit.

Allocator variants subclass the reference classes and override the one method with the bug,
with the invariant checks switched off (the point is to see whether the goldens catch it).
"""
import numpy as np

from llmref.ref import paged_kv as ref


class _Unchecked(ref.PagedKVCache):
    def check_invariants(self):
        pass


def _replay(cache_class, ops, tokens, num_blocks, block_size, prefix_caching):
    out = ref.run_workload(ops, tokens, num_blocks, block_size, prefix_caching, cache_class)
    return out["slot_ids"], out["hits"], out["block_tables"], out["free_blocks"], out["status"]


class _FreeIgnoresRefCount(ref.BlockAllocator):
    def release(self, block):
        """Returns the block to the free queue even while a fork still holds it."""
        self.ref_count[block] = 0
        self.free_queue[block] = None


class _StaleBlockCache(_Unchecked):
    def __init__(self, num_blocks, block_size, prefix_caching):
        super().__init__(num_blocks, block_size, prefix_caching)
        self.allocator = _FreeIgnoresRefCount(num_blocks)


def allocator_stale_block_after_free(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """free() puts every block of the sequence on the free list, ignoring other holders:
    a block still in a forked sequence's table is handed out again (stale block reuse)."""
    return _replay(_StaleBlockCache, ops, tokens, num_blocks, block_size, prefix_caching)


class _NoDecrement(ref.BlockAllocator):
    def release(self, block):
        """Only a sole holder's release frees the block; shared blocks are never decremented."""
        if self.ref_count[block] == 1:
            self.ref_count[block] = 0
            self.free_queue[block] = None


class _LeakyCache(_Unchecked):
    def __init__(self, num_blocks, block_size, prefix_caching):
        super().__init__(num_blocks, block_size, prefix_caching)
        self.allocator = _NoDecrement(num_blocks)


def allocator_refcount_not_decremented(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """Releasing a shared block forgets to decrement its ref_count: the block leaks."""
    return _replay(_LeakyCache, ops, tokens, num_blocks, block_size, prefix_caching)


class _MostRecent(ref.BlockAllocator):
    def allocate(self):
        """Pops the most recently freed block (a stack), evicting the hottest cached block."""
        if not self.free_queue:
            raise ref.OutOfBlocks
        block, _ = self.free_queue.popitem(last=True)
        if self.hash_of[block] is not None:
            del self.cached[self.hash_of[block]]
            self.hash_of[block] = None
        self.ref_count[block] = 1
        return block


class _MRUCache(_Unchecked):
    def __init__(self, num_blocks, block_size, prefix_caching):
        super().__init__(num_blocks, block_size, prefix_caching)
        self.allocator = _MostRecent(num_blocks)


def allocator_evicts_most_recent(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """The free list is used as a stack: most recently freed blocks are reused (and evicted)
    first instead of the least recently freed."""
    return _replay(_MRUCache, ops, tokens, num_blocks, block_size, prefix_caching)


class _NoChainHash(_Unchecked):
    def prefix_hits(self, prompt):
        """Looks blocks up by their own tokens only, ignoring everything before them."""
        hits = []
        if not self.prefix_caching:
            return hits
        for start in range(0, len(prompt) - self.block_size + 1, self.block_size):
            block = self.allocator.lookup(ref.block_hash(ref.ROOT_HASH, prompt[start:start + self.block_size]))
            if block is None:
                break
            hits.append(block)
        return hits

    def _block_filled(self, seq):
        h = ref.block_hash(ref.ROOT_HASH, self.tokens[seq][-self.block_size:])
        self.hashes[seq].append(h)
        if self.prefix_caching:
            self.allocator.register(self.tables[seq][-1], h)


def allocator_hash_without_parent(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """Block hash = hash(tokens of the block) without the parent hash: a block with the same
    tokens after a different prefix is wrongly reused (its keys were computed in another context)."""
    return _replay(_NoChainHash, ops, tokens, num_blocks, block_size, prefix_caching)


class _NoCopyOnWrite(_Unchecked):
    def _write_token(self, seq, token):
        """Writes into the shared partial block instead of copying it first."""
        table, pos = self.tables[seq], len(self.tokens[seq])
        if pos % self.block_size == 0:
            table.append(self.allocator.allocate())
        self.tokens[seq].append(int(token))
        if (pos + 1) % self.block_size == 0:
            self._block_filled(seq)


def allocator_no_copy_on_write(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """A fork's append writes into the block it still shares with its parent."""
    return _replay(_NoCopyOnWrite, ops, tokens, num_blocks, block_size, prefix_caching)


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


def _decode(q, k_cache, v_cache, block_tables, seq_lens, scale, token_keys, kv_head):
    """Paged decode with the token enumeration and head mapping supplied by the variant."""
    batch, hq, d = q.shape
    hkv = k_cache.shape[2]
    scale = scale or 1.0 / np.sqrt(d)
    out = np.empty_like(q)
    for b in range(batch):
        places = token_keys(block_tables[b], int(seq_lens[b]), k_cache.shape[1])
        k = np.stack([k_cache[blk, off] for blk, off in places])  # (n, Hkv, D)
        v = np.stack([v_cache[blk, off] for blk, off in places])
        for h in range(hq):
            g = kv_head(h, hq, hkv)
            s = (k[:, g, :] @ q[b, h]) * q.dtype.type(scale)
            p = np.exp(s - s.max())
            out[b, h] = (p @ v[:, g, :]) / p.sum()
    return out


def _through_table(table, n, bs):
    return [(table[j // bs], j % bs) for j in range(n)]


def _repeat(h, hq, hkv):
    return h // (hq // hkv)


def decode_reads_past_length(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    """Reads the whole last block, including the unwritten slots after seq_len."""
    def whole_blocks(table, n, bs):
        return _through_table(table, -(-n // bs) * bs, bs)
    return _decode(q, k_cache, v_cache, block_tables, seq_lens, scale, whole_blocks, _repeat)


def decode_gqa_tiled(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    """Maps query head h to KV head h % Hkv (tiling) instead of h // (Hq / Hkv) (repeat)."""
    return _decode(q, k_cache, v_cache, block_tables, seq_lens, scale, _through_table,
                   lambda h, hq, hkv: h % hkv)


def decode_ignores_block_table(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    """Treats logical block j // bs as the physical block (assumes a contiguous pool)."""
    def contiguous(table, n, bs):
        return [(j // bs, j % bs) for j in range(n)]
    return _decode(q, k_cache, v_cache, block_tables, seq_lens, scale, contiguous, _repeat)


class _SlotWithoutStride(_Unchecked):
    def slot(self, seq, pos):
        """block_table[pos // bs] + pos % bs: the block id is not scaled by the block size."""
        return self.tables[seq][pos // self.block_size] + pos % self.block_size


def allocator_slot_without_block_stride(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """Slot mapping forgets to multiply the physical block by block_size, so sequences'
    slots overlap."""
    return _replay(_SlotWithoutStride, ops, tokens, num_blocks, block_size, prefix_caching)
