"""paged_kv_allocator: allocator properties, copy-on-write, prefix caching, eviction order,
what the free queue cannot supply, bad workloads, exact comparison of the outputs, and the
memory accounting of bench/paged_kv_allocator.py."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmref.errors import InputError
from llmref.ref import paged_kv_allocator as ref
from llmref.ref.paged_kv_allocator import APPEND, ARRIVE, FORK, FREE, PagedKVCache


def _apply(cache, pool, op, seq, arg, tokens):
    """Apply one op to `cache` the way run_workload does (asking first whether the free queue
    can supply it), mirroring every KV write (and copy-on-write copy) into `pool`
    {slot: token}; returns False when the op is rejected."""
    live = seq in cache.tables
    if op == ARRIVE and not live and cache.can_arrive(tokens):
        hits = cache.prefix_hits(tokens)
        slots, flags = cache.arrive(seq, tokens)
        n_hit = sum(flags) * cache.block_size
        for pos, (slot, token) in enumerate(zip(slots, tokens)):
            if pos < n_hit:  # a prefix-cache hit must hold exactly this token already
                assert pool[slot] == token
            else:
                pool[slot] = token
        assert len(hits) == sum(flags)
    elif op == APPEND and live:
        for token in tokens:
            if not cache.can_append(seq):
                return False
            pos = len(cache.tokens[seq])
            before = cache.tables[seq][-1] if cache.tables[seq] else None
            slot = cache.append(seq, token)
            after = cache.tables[seq][pos // cache.block_size]
            if pos % cache.block_size and after != before:  # copy-on-write: copy the rows
                for offset in range(pos % cache.block_size):
                    pool[after * cache.block_size + offset] = pool[before * cache.block_size + offset]
            pool[slot] = token
    elif op == FORK and not live and arg in cache.tables:
        cache.fork(seq, arg)
    elif op == FREE and live:
        cache.free(seq)
    else:
        return False
    return True


OPS = st.lists(st.tuples(st.sampled_from([ARRIVE, APPEND, APPEND, FORK, FREE]),
                         st.integers(0, 7), st.integers(0, 7),
                         st.lists(st.integers(0, 3), min_size=1, max_size=9)),
               min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(ops=OPS, num_blocks=st.integers(1, 12), block_size=st.sampled_from([1, 2, 4]),
       prefix_caching=st.booleans())
def test_allocator_invariants_and_contents_under_random_workload(ops, num_blocks, block_size,
                                                                  prefix_caching):
    """After every op: the allocator invariants hold, and reading any live sequence through
    its block table returns exactly its tokens (no stale, shared-but-overwritten or wrongly
    reused block). Small vocabularies make prefix-cache hits frequent."""
    cache = PagedKVCache(num_blocks, block_size, prefix_caching)
    pool = {}
    for op, seq, arg, tokens in ops:
        _apply(cache, pool, op, seq, arg, tokens)
        cache.check_invariants()
        for s, toks in cache.tokens.items():
            assert [pool[cache.slot(s, p)] for p in range(len(toks))] == toks
    for seq in list(cache.tables):
        cache.free(seq)
    assert cache.allocator.num_free() == num_blocks
    assert cache.allocator.ref_count == [0] * num_blocks


def test_fork_shares_blocks_and_copies_on_write():
    cache = PagedKVCache(num_blocks=8, block_size=4, prefix_caching=False)
    cache.arrive(0, [1, 2, 3, 4, 5, 6])
    cache.fork(1, 0)
    assert cache.tables[1] == cache.tables[0]
    assert [cache.allocator.ref_count[b] for b in cache.tables[0]] == [2, 2]
    cache.append(1, 7)  # writes into the shared partial block: copy first
    assert cache.tables[1][0] == cache.tables[0][0]
    assert cache.tables[1][1] != cache.tables[0][1]
    assert [cache.allocator.ref_count[b] for b in cache.tables[0]] == [2, 1]
    cache.append(0, 9)  # the parent's block is its own again: no copy
    assert cache.allocator.ref_count[cache.tables[0][1]] == 1
    cache.check_invariants()


def test_prefix_cache_hits_follow_the_hash_chain():
    cache = PagedKVCache(num_blocks=16, block_size=4, prefix_caching=True)
    a = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    _, flags = cache.arrive(0, a)
    assert flags == [0, 0]
    cache.free(0)
    _, flags = cache.arrive(1, a[:8] + [42, 43])  # same two full blocks: both hit
    assert flags == [1, 1]
    assert cache.tables[1][:2] == [cache.allocator.lookup(cache.hashes[1][0]),
                                   cache.allocator.lookup(cache.hashes[1][1])]
    _, flags = cache.arrive(2, [9, 9, 9, 9] + a[4:8])  # block 1 tokens after another block 0
    assert flags == [0, 0]
    _, flags = cache.arrive(3, a[:4] + [5, 6, 7])  # full block 0 hits; partial block never
    assert flags == [1]
    assert cache.tables[3][1] not in cache.tables[1]
    cache.check_invariants()


def test_eviction_is_least_recently_freed_and_last_block_first():
    cache = PagedKVCache(num_blocks=4, block_size=2, prefix_caching=True)
    cache.arrive(0, [1, 2, 3, 4])  # blocks 0, 1, both cached
    cache.free(0)  # free queue: 2, 3, then 1 before 0 (a sequence's tail is evicted first)
    assert list(cache.allocator.free_queue) == [2, 3, 1, 0]
    cache.arrive(1, [7, 7, 8, 8, 9, 9])  # takes 2, 3 and 1: evicts block 1's hash only
    assert cache.tables[1] == [2, 3, 1]
    cache.free(1)
    _, flags = cache.arrive(2, [1, 2, 3, 4])
    assert flags == [1, 0]
    assert cache.tables[2][0] == 0


def test_workload_rejects_ops_when_out_of_blocks():
    ops = np.array([[ARRIVE, 0, 8], [ARRIVE, 1, 8], [FREE, 0, 0], [ARRIVE, 1, 8]])
    tokens = np.arange(24)
    out = ref.run_workload(ops, tokens, num_blocks=2, block_size=4)
    assert out["status"].tolist() == [1, 0, 1, 1]
    assert (out["slot_ids"][8:16] == -1).all()
    assert out["free_blocks"].tolist() == [0, 0, 2, 0]


@pytest.mark.parametrize("ops,tokens,name", [
    ([[7, 0, 1]], [1], "ops"),
    ([[ARRIVE, -1, 1]], [1], "ops"),
    ([[ARRIVE, 0, 3]], [1, 2], "tokens"),
    ([[ARRIVE, 0, 1, 0]], [1], "ops"),
    ([[ARRIVE, 0, 1]], [-5], "tokens"),
])
def test_bad_workload_is_rejected(ops, tokens, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        ref.run_workload(np.array(ops), np.array(tokens))


def test_the_cache_refuses_what_the_free_queue_cannot_supply():
    """can_arrive / can_append say no exactly when arrive / append would need a block the
    free queue does not hold; asked anyway, they raise OutOfBlocks and change nothing."""
    cache = PagedKVCache(num_blocks=2, block_size=2, prefix_caching=False)
    cache.arrive(0, [1, 2, 3])  # both blocks, the second half full
    cache.fork(1, 0)
    assert not cache.can_arrive([4]) and cache.can_append(0) is False  # copy-on-write
    with pytest.raises(ref.OutOfBlocks):
        cache.arrive(2, [4])
    with pytest.raises(ref.OutOfBlocks):
        cache.append(1, 4)
    assert 2 not in cache.tables and cache.tokens[1] == [1, 2, 3]
    cache.check_invariants()
    cache.free(1)  # the last block is 0's alone again: no copy, no block needed
    assert cache.can_append(0) and cache.append(0, 4) == cache.slot(0, 3)
    assert not cache.can_append(0)  # the next token starts a block
    cache.check_invariants()


def test_allocator_block_tables_compare_exactly():
    """The allocator's outputs are integers and compare exactly: one block id off in one
    table, or the tables of two sequences swapped, fails every case."""
    import llmref
    from llmref.spec import load_spec

    spec = load_spec("paged_kv_allocator")
    assert {t.name: t.dtype for t in spec.outputs}["block_tables"] == "int32"

    def one_block_off(**inputs):
        slots, hits, tables, free, status = ref.paged_kv_allocator(**inputs)
        tables = tables.copy()
        tables[np.unravel_index(np.argmax(tables), tables.shape)] += 1
        return slots, hits, tables, free, status

    report = llmref.audit(spec, one_block_off, dtype="float64", tier="full")
    assert report.results and all(r.outcome.value == "NUMERICAL_MISMATCH" for r in report.results)




def _bench_module():
    """bench/paged_kv_allocator.py, where the memory accounting lives (a benchmark's tool)."""
    path = Path(__file__).resolve().parents[1] / "bench" / "paged_kv_allocator.py"
    spec = importlib.util.spec_from_file_location("bench_paged_kv_allocator", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kv_memory_accounting_bounds():
    bench = _bench_module()
    rng = np.random.default_rng(6)
    prompts, outputs = rng.integers(1, 500, size=50), rng.integers(1, 500, size=50)
    acc = bench.kv_memory_accounting(prompts, outputs, max_seq_len=2048, block_size=16,
                                   bytes_per_token=1000)
    used = (prompts + outputs).sum() * 1000
    assert acc["used_bytes"] == used
    assert acc["contiguous_bytes"] == 50 * 2048 * 1000
    assert used <= acc["paged_bytes"] < used + 50 * 16 * 1000  # < one block wasted per request
    assert acc["paged_utilization"] > acc["contiguous_utilization"]
    with pytest.raises(InputError, match="^max_seq_len:"):
        bench.kv_memory_accounting(prompts, outputs, max_seq_len=100, block_size=16, bytes_per_token=1)
