"""Wrong paged_kv_allocator variants seen in the wild; each must fail its audit.

Each variant subclasses the reference classes and overrides the one method with the bug,
with the invariant checks switched off (the point is to see whether the goldens catch it).
"""
from llmref.ref import paged_kv_allocator as ref


class _Unchecked(ref.PagedKVCache):
    def check_invariants(self):
        pass


def _replay(cache_class, ops, tokens, num_blocks, block_size, prefix_caching):
    out = ref.run_workload(ops, tokens, num_blocks=num_blocks, block_size=block_size,
                           prefix_caching=prefix_caching, cache_class=cache_class)
    return out["slot_ids"], out["hits"], out["block_tables"], out["free_blocks"], out["status"]


def _with_allocator(allocator_class):
    """An unchecked cache over a modified allocator."""
    class Cache(_Unchecked):
        def __init__(self, num_blocks, block_size, prefix_caching):
            super().__init__(num_blocks, block_size, prefix_caching)
            self.allocator = allocator_class(num_blocks)
    return Cache


class _FreeIgnoresRefCount(ref.BlockAllocator):
    def release(self, block):
        """Returns the block to the free queue even while a fork still holds it."""
        self.ref_count[block] = 0
        self.free_queue[block] = None


def allocator_stale_block_after_free(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """free() puts every block of the sequence on the free list, ignoring other holders:
    a block still in a forked sequence's table is handed out again (stale block reuse)."""
    return _replay(_with_allocator(_FreeIgnoresRefCount), ops, tokens, num_blocks, block_size,
                   prefix_caching)


class _NoDecrement(ref.BlockAllocator):
    def release(self, block):
        """Only a sole holder's release frees the block; shared blocks are never decremented."""
        if self.ref_count[block] == 1:
            self.ref_count[block] = 0
            self.free_queue[block] = None


def allocator_refcount_not_decremented(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """Releasing a shared block forgets to decrement its ref_count: the block leaks."""
    return _replay(_with_allocator(_NoDecrement), ops, tokens, num_blocks, block_size,
                   prefix_caching)


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


def allocator_evicts_most_recent(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """The free list is used as a stack: most recently freed blocks are reused (and evicted)
    first instead of the least recently freed."""
    return _replay(_with_allocator(_MostRecent), ops, tokens, num_blocks, block_size,
                   prefix_caching)


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

    def block_filled(self, seq):
        h = ref.block_hash(ref.ROOT_HASH, self.tokens[seq][-self.block_size:])
        self.hashes[seq].append(h)
        if self.prefix_caching:
            self.allocator.register(self.tables[seq][-1], h)


def allocator_hash_without_parent(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """Block hash = hash(tokens of the block) without the parent hash: a block with the same
    tokens after a different prefix is wrongly reused (its keys were computed in another context)."""
    return _replay(_NoChainHash, ops, tokens, num_blocks, block_size, prefix_caching)


class _NoCopyOnWrite(_Unchecked):
    def copies_on_write(self, seq):
        """Writes into the shared partial block instead of copying it first."""
        return False


def allocator_no_copy_on_write(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """A fork's append writes into the block it still shares with its parent."""
    return _replay(_NoCopyOnWrite, ops, tokens, num_blocks, block_size, prefix_caching)


class _SlotWithoutStride(_Unchecked):
    def slot(self, seq, pos):
        """block_table[pos // bs] + pos % bs: the block id is not scaled by the block size."""
        return self.tables[seq][pos // self.block_size] + pos % self.block_size


def allocator_slot_without_block_stride(ops, tokens, num_blocks=16, block_size=4, prefix_caching=True):
    """Slot mapping forgets to multiply the physical block by block_size, so sequences'
    slots overlap."""
    return _replay(_SlotWithoutStride, ops, tokens, num_blocks, block_size, prefix_caching)
