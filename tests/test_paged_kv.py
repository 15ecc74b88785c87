"""Paged KV cache: allocator properties, copy-on-write, prefix caching, eviction order, bad
input, and paged decode against contiguous attention on the gathered cache."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmref.accel.cupy import paged_kv as cupy_paged
from llmref.accel.numba_cpu import paged_kv as cpu_paged
from llmref.accel.numba_cuda import paged_kv as cuda_paged
from llmref.errors import InputError
from llmref.ref import paged_kv as ref
from llmref.ref.paged_kv import APPEND, ARRIVE, FORK, FREE, PagedKVCache

# ---------------------------------------------------------------------------------------
# Allocator


def _apply(cache, pool, op, seq, arg, tokens):
    """Apply one op to `cache`, mirroring every KV write (and copy-on-write copy) into
    `pool` {slot: token}; returns False when the cache rejected the op."""
    live = seq in cache.tables
    try:
        if op == ARRIVE and not live:
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
    except ref.OutOfBlocks:
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


# ---------------------------------------------------------------------------------------
# Paged decode and KV write

DECODERS = [ref.paged_attention_decode, cpu_paged.paged_attention_decode,
            cuda_paged.paged_attention_decode, cupy_paged.paged_attention_decode]
WRITERS = [ref.kv_write, cpu_paged.kv_write, cuda_paged.kv_write, cupy_paged.kv_write]


def contiguous_decode(q, k_cache, v_cache, block_tables, seq_lens, scale):
    """Gather each sequence's K/V into a contiguous (n, Hkv, D) copy, repeat the KV heads
    for GQA, and apply ordinary softmax attention -- independent of the paged loops."""
    batch, hq, d = q.shape
    hkv = k_cache.shape[2]
    out = np.empty_like(q)
    for b in range(batch):
        k = ref.gather_cache(k_cache, block_tables[b], int(seq_lens[b]))
        v = ref.gather_cache(v_cache, block_tables[b], int(seq_lens[b]))
        k = np.repeat(k, hq // hkv, axis=1)  # (n, Hq, D)
        v = np.repeat(v, hq // hkv, axis=1)
        s = np.einsum("hd,nhd->hn", q[b], k) * scale
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[b] = np.einsum("hn,nhd->hd", p / p.sum(axis=1, keepdims=True), v)
    return out


@pytest.mark.parametrize("impl", DECODERS[:2], ids=["ref", "numba-cpu"])
@pytest.mark.parametrize("hq,hkv,block_size", [(4, 4, 16), (8, 2, 16), (6, 1, 32), (4, 2, 1)])
def test_paged_decode_equals_contiguous_attention_on_gathered_cache(impl, hq, hkv, block_size):
    rng = np.random.default_rng(hq * 100 + hkv * 10 + block_size)
    case = ref.decode_case(rng, B=4, Hq=hq, Hkv=hkv, D=16, block_size=block_size,
                           num_blocks=40, max_len=70)
    got = impl(**case, scale=0.3)
    want = contiguous_decode(**case, scale=0.3)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_numba_cpu_decode_float32_close_to_float64_reference():
    rng = np.random.default_rng(5)
    case = ref.decode_case(rng, B=3, Hq=8, Hkv=2, D=64, block_size=16, num_blocks=64, max_len=500)
    want = ref.paged_attention_decode(**case)
    single = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in case.items()}
    got = cpu_paged.paged_attention_decode(**single)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


def _decode_inputs(B=2, Hq=4, Hkv=2, D=8, bs=4, nb=6, lens=(5, 3), table_cols=2):
    rng = np.random.default_rng(0)
    return {"q": rng.normal(size=(B, Hq, D)), "k_cache": rng.normal(size=(nb, bs, Hkv, D)),
            "v_cache": rng.normal(size=(nb, bs, Hkv, D)),
            "block_tables": np.zeros((B, table_cols), np.int32), "seq_lens": np.array(lens, np.int32)}


def _bad_decode_inputs():
    out_of_range = _decode_inputs()
    out_of_range["block_tables"][0, 1] = 6
    too_short = _decode_inputs(lens=(9, 3))
    heads = _decode_inputs(Hq=3)
    negative = _decode_inputs(lens=(5, -1))
    zero = _decode_inputs(lens=(0, 3))
    unused_garbage_ok = _decode_inputs(lens=(4, 3))
    unused_garbage_ok["block_tables"][:, 1] = -1  # never read: allowed
    rows = _decode_inputs()
    rows["block_tables"] = rows["block_tables"][:1]
    return [("block id out of range", out_of_range, "block_tables"),
            ("table too short", too_short, "block_tables"),
            ("table rows differ from the batch", rows, "block_tables"),
            ("heads do not divide", heads, "q"),
            ("no query head", _decode_inputs(Hq=0), "q"),
            ("no KV head", _decode_inputs(Hkv=0), "k_cache"),
            ("head dim 0", _decode_inputs(D=0), "k_cache"),
            ("block size 0", _decode_inputs(bs=0), "k_cache"),
            ("no block", _decode_inputs(nb=0), "k_cache"),
            ("negative seq_len", negative, "seq_lens"),
            ("zero seq_len", zero, "seq_lens"),
            ("unused entries", unused_garbage_ok, None)]


@pytest.mark.parametrize("impl", DECODERS, ids=["ref", "numba-cpu", "numba-cuda", "cupy"])
@pytest.mark.parametrize("what,inputs,name", _bad_decode_inputs(), ids=lambda x: x if isinstance(x, str) else "")
def test_bad_decode_input_raises_before_any_kernel(impl, what, inputs, name):
    if name is None:
        if impl is cupy_paged.paged_attention_decode:
            pytest.importorskip("cupy", reason="the cupy backend needs cupy and a GPU to run")
        assert impl(**inputs).shape == inputs["q"].shape
        return
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(**inputs)


def _write_inputs(slots):
    rng = np.random.default_rng(1)
    return {"key": rng.normal(size=(len(slots), 2, 4)), "value": rng.normal(size=(len(slots), 2, 4)),
            "slot_mapping": np.array(slots, np.int64),
            "k_cache": rng.normal(size=(3, 4, 2, 4)), "v_cache": rng.normal(size=(3, 4, 2, 4))}


@pytest.mark.parametrize("impl", DECODERS, ids=["ref", "numba-cpu", "numba-cuda", "cupy"])
def test_decode_of_no_sequence_is_empty(impl):
    """A batch of 0 sequences: an empty (0, Hq, D) output, as torch gives."""
    inputs = _decode_inputs(B=0, lens=())
    inputs = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in inputs.items()}
    out = impl(**inputs)
    assert out.shape == (0, 4, 8) and out.dtype == np.float32


def test_cupy_partition_size_is_checked_before_any_kernel():
    with pytest.raises(InputError, match="^partition_size:"):
        cupy_paged.paged_attention_decode(**_decode_inputs(), partition_size=0)


def _bad_write_inputs():
    def pool(**shape):
        dims = dict(nb=3, bs=4, hkv=2, d=4)
        dims.update(shape)
        inputs = _write_inputs([0, 1])
        size = (dims["nb"], dims["bs"], dims["hkv"], dims["d"])
        inputs["k_cache"], inputs["v_cache"] = np.zeros(size), np.zeros(size)
        inputs["key"] = inputs["value"] = np.zeros((2, dims["hkv"], dims["d"]))
        return inputs

    key_dtype = _write_inputs([0, 1])
    key_dtype["key"] = key_dtype["key"].astype(np.float32)
    value_shape = _write_inputs([0, 1])
    value_shape["value"] = value_shape["value"][:1]
    count = _write_inputs([0, 1])
    count["slot_mapping"] = count["slot_mapping"][:1]
    return [("slot out of range", _write_inputs([0, 12]), "slot_mapping"),
            ("slot repeated", _write_inputs([3, 3]), "slot_mapping"),
            ("slot below -1", _write_inputs([-2, 1]), "slot_mapping"),
            ("one slot for two tokens", count, "slot_mapping"),
            ("key dtype differs from the pool", key_dtype, "key"),
            ("value shape differs from key", value_shape, "value"),
            ("key heads differ from the pool", dict(_write_inputs([0, 1]), key=np.zeros((2, 3, 4))), "key"),
            ("no KV head", pool(hkv=0), "k_cache"),
            ("head dim 0", pool(d=0), "k_cache"),
            ("no block", pool(nb=0), "k_cache")]


@pytest.mark.parametrize("impl", WRITERS, ids=["ref", "numba-cpu", "numba-cuda", "cupy"])
@pytest.mark.parametrize("what,inputs,name", _bad_write_inputs(),
                         ids=lambda x: x if isinstance(x, str) else "")
def test_bad_write_input_raises_before_any_kernel(impl, what, inputs, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(**inputs)


@pytest.mark.parametrize("impl", WRITERS, ids=["ref", "numba-cpu", "numba-cuda", "cupy"])
def test_writing_no_token_returns_the_pools_unchanged(impl):
    inputs = _write_inputs([])
    inputs["key"], inputs["value"] = np.zeros((0, 2, 4)), np.zeros((0, 2, 4))
    k_out, v_out = impl(**inputs)
    np.testing.assert_array_equal(k_out, inputs["k_cache"])
    np.testing.assert_array_equal(v_out, inputs["v_cache"])
    assert k_out is not inputs["k_cache"]


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_kv_write_three_ulps_off_in_one_value_fails_every_case(dtype):
    """kv_write is exact: a result with a single value three ulps away from the written bits
    (in the evaluation dtype) fails every case."""
    import llmref
    from llmref.dtypes import FORMATS

    bits = np.dtype(FORMATS[dtype].bits_dtype)

    def three_ulps_off(**inputs):
        k_out, v_out = ref.kv_write(**inputs)
        flat = v_out.reshape(-1).view(bits)
        flat[flat.size // 2] += bits.type(3)  # |value| + 3 ulps
        return k_out, v_out

    report = llmref.audit("kv_write", three_ulps_off, dtype=dtype, tier="full")
    assert report.results and all(r.outcome.value == "NUMERICAL_MISMATCH" for r in report.results)
    for result in report.results:  # the keys pass; exactly the one value differs
        k_cmp, v_cmp = result.comparisons
        assert k_cmp.outcome.value == "PASSED" and v_cmp.metrics["mismatched"] == 1


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


@pytest.mark.parametrize("impl", WRITERS[:2], ids=["ref", "numba-cpu"])
def test_kv_write_then_read_through_table_returns_the_written_rows(impl):
    """Writing tokens 0..n-1 of a sequence through slot = table[pos // bs] * bs + pos % bs
    and gathering through the same table returns them in order."""
    rng = np.random.default_rng(2)
    bs, n = 4, 10
    table = rng.permutation(8)[:3]
    slots = np.array([table[p // bs] * bs + p % bs for p in range(n)], np.int64)
    key, value = rng.normal(size=(n, 2, 8)), rng.normal(size=(n, 2, 8))
    pool = rng.normal(size=(8, bs, 2, 8))
    k_out, v_out = impl(key, value, slots, pool, pool.copy())
    np.testing.assert_array_equal(ref.gather_cache(k_out, table, n), key)
    np.testing.assert_array_equal(ref.gather_cache(v_out, table, n), value)


@pytest.mark.crosscheck
def test_paged_decode_matches_torch_sdpa_on_gathered_cache():
    torch = pytest.importorskip("torch", reason="crosscheck against torch SDPA needs torch")
    rng = np.random.default_rng(3)
    case = ref.decode_case(rng, B=3, Hq=8, Hkv=2, D=32, block_size=16, num_blocks=20, max_len=90)
    got = ref.paged_attention_decode(**case)
    for b in range(3):
        n = int(case["seq_lens"][b])
        k = torch.from_numpy(ref.gather_cache(case["k_cache"], case["block_tables"][b], n))
        v = torch.from_numpy(ref.gather_cache(case["v_cache"], case["block_tables"][b], n))
        q = torch.from_numpy(case["q"][b])[:, None, :]  # (Hq, 1, D)
        want = torch.nn.functional.scaled_dot_product_attention(
            q, k.transpose(0, 1), v.transpose(0, 1), enable_gqa=True)  # (Hq, 1, D)
        np.testing.assert_allclose(got[b], want[:, 0].numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("partition_size", [None, 16, 40])
def test_cupy_split_k_partitions_merge_exactly(dtype, partition_size):
    pytest.importorskip("cupy", reason="the cupy backend needs cupy and a GPU")
    from llmref.backends import availability
    from llmref.dtypes import numpy_dtype

    ok, why = availability("cupy")
    if not ok:
        pytest.skip(f"cupy backend unavailable: {why}")
    rng = np.random.default_rng(4)
    case = ref.decode_case(rng, B=5, Hq=32, Hkv=8, D=128, block_size=16, num_blocks=80, max_len=300)
    cast = {k: v.astype(numpy_dtype(dtype)) if v.dtype == np.float64 else v for k, v in case.items()}
    want = ref.paged_attention_decode(**{k: v.astype(np.float64) if k in ("q", "k_cache", "v_cache")
                                         else v for k, v in cast.items()})
    got = cupy_paged.paged_attention_decode(**cast, partition_size=partition_size).astype(np.float64)
    u = {"float32": 2.0 ** -24, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}[dtype]
    np.testing.assert_allclose(got, want, rtol=0, atol=4 * u * np.abs(want).max() + 64 * 2.0 ** -24)


# ---------------------------------------------------------------------------------------
# Memory accounting


def test_kv_memory_accounting_bounds():
    rng = np.random.default_rng(6)
    prompts, outputs = rng.integers(1, 500, size=50), rng.integers(1, 500, size=50)
    acc = ref.kv_memory_accounting(prompts, outputs, max_seq_len=2048, block_size=16,
                                   bytes_per_token=1000)
    used = (prompts + outputs).sum() * 1000
    assert acc["used_bytes"] == used
    assert acc["contiguous_bytes"] == 50 * 2048 * 1000
    assert used <= acc["paged_bytes"] < used + 50 * 16 * 1000  # < one block wasted per request
    assert acc["paged_utilization"] > acc["contiguous_utilization"]
    with pytest.raises(InputError, match="^max_seq_len:"):
        ref.kv_memory_accounting(prompts, outputs, max_seq_len=100, block_size=16, bytes_per_token=1)
