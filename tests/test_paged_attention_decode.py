"""paged_attention_decode: equal to contiguous attention on the gathered cache, float32
against the float64 reference, bad input, no sequence, the cupy backend's split-K partitions,
and agreement with torch's scaled_dot_product_attention."""
import numpy as np
import pytest

from llmref.accel.cupy import paged_attention_decode as cupy_decode
from llmref.accel.numba_cpu import paged_attention_decode as cpu_decode
from llmref.accel.numba_cuda import paged_attention_decode as cuda_decode
from llmref.errors import InputError
from llmref.ref import paged_attention_decode as ref

DECODERS = [ref.paged_attention_decode, cpu_decode.paged_attention_decode,
            cuda_decode.paged_attention_decode, cupy_decode.paged_attention_decode]


def gather_cache(cache, block_table, seq_len):
    """(seq_len, Hkv, D) contiguous copy of one sequence's cached K or V, read through its
    block table: the baselines' view of a paged context."""
    block_size = cache.shape[1]
    n_blocks = -(-seq_len // block_size)
    return cache[np.asarray(block_table[:n_blocks])].reshape(-1, *cache.shape[2:])[:seq_len]


def contiguous_decode(q, k_cache, v_cache, block_tables, seq_lens, scale):
    """Gather each sequence's K/V into a contiguous (n, Hkv, D) copy, repeat the KV heads
    for GQA, and apply ordinary softmax attention -- independent of the paged loops."""
    batch, hq, d = q.shape
    hkv = k_cache.shape[2]
    out = np.empty_like(q)
    for b in range(batch):
        k = gather_cache(k_cache, block_tables[b], int(seq_lens[b]))
        v = gather_cache(v_cache, block_tables[b], int(seq_lens[b]))
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


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_numba_cpu_reads_only_the_blocks_a_half_precision_batch_reads(dtype):
    """A float16 pool is widened only where the batch reads it (the renumbered tables reach
    the same blocks) and a bfloat16 one is read in place as bit patterns; either way the
    entries past a sequence's end (garbage here) are never read, and the output is the one
    the whole pool widened to float32 would give, bit for bit."""
    import ml_dtypes

    half_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    rng = np.random.default_rng(11)
    case = ref.decode_case(rng, B=3, Hq=4, Hkv=2, D=8, block_size=4, num_blocks=50, max_len=30)
    tables, lens = case["block_tables"].copy(), case["seq_lens"]
    needed = -(-lens // 4)
    for b in range(3):
        tables[b, needed[b]:] = -7  # never read, so never checked or gathered
    blocks, renumbered = cpu_decode.referenced_blocks(tables, lens, 4)
    read = np.arange(tables.shape[1]) < needed[:, None]
    assert np.array_equal(blocks[renumbered[read]], tables[read])
    assert np.array_equal(blocks, np.unique(tables[read])) and blocks.size < 50
    half = {k: v.astype(half_dtype) if v.dtype == np.float64 else v for k, v in case.items()}
    got = cpu_decode.paged_attention_decode(**dict(half, block_tables=tables))
    whole = {k: v.astype(np.float32) if k in ("q", "k_cache", "v_cache") else v for k, v in half.items()}
    want = cpu_decode.paged_attention_decode(**whole).astype(half_dtype)
    assert got.dtype == half_dtype and np.array_equal(got.view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_numba_cpu_half_precision_pool_values_are_checked_where_read(dtype):
    """NaN or inf in a half-precision row the batch reads raises naming its cache, as at
    float32; NaN in the rows no sequence reads changes nothing."""
    import ml_dtypes

    half_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    for what, inputs, name in _bad_decode_inputs()[:4]:  # the pool-value cases
        half = {k: v.astype(half_dtype) if v.dtype == np.float64 else v for k, v in inputs.items()}
        if name is None:
            clean = {k: v.astype(half_dtype) if v.dtype == np.float64 else v
                     for k, v in _decode_inputs().items()}
            assert np.array_equal(cpu_decode.paged_attention_decode(**half).view(np.uint16),
                                  cpu_decode.paged_attention_decode(**clean).view(np.uint16)), what
        else:
            with pytest.raises(InputError, match=f"^{name}:"):
                cpu_decode.paged_attention_decode(**half)


@pytest.mark.parametrize("impl", DECODERS[:2], ids=["ref", "numba-cpu"])
def test_nan_in_the_rows_no_sequence_reads_changes_nothing(impl):
    """The pool's unwritten memory -- blocks no table names, slots past a sequence's end --
    may hold anything, NaN included; the outputs are those of a clean pool, bit for bit."""
    rng = np.random.default_rng(3)
    case = ref.decode_case(rng, B=3, Hq=4, Hkv=2, D=8, block_size=4, num_blocks=40, max_len=13)
    read = ref.read_rows(case["block_tables"], case["seq_lens"], case["k_cache"].shape[:2])
    partly_read = read.any(axis=1) & ~read.all(axis=1)  # a last block's slots past the end
    assert (~read.any(axis=1)).any() and partly_read.any()
    dirty = dict(case, k_cache=case["k_cache"].copy(), v_cache=case["v_cache"].copy())
    dirty["k_cache"][~read] = dirty["v_cache"][~read] = np.nan
    assert np.array_equal(impl(**dirty), impl(**case))


def test_numba_cpu_decode_float32_close_to_float64_reference():
    rng = np.random.default_rng(5)
    case = ref.decode_case(rng, B=3, Hq=8, Hkv=2, D=64, block_size=16, num_blocks=64, max_len=500)
    want = ref.paged_attention_decode(**case)
    single = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in case.items()}
    got = cpu_decode.paged_attention_decode(**single)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


def test_numba_cpu_scores_that_overflow_float32_give_a_non_finite_output_not_an_error():
    """Finite pool values whose float32 scores overflow (|q . k| > 3.4e38) are no bad input:
    no InputError, and the overflowed sequence's output is not finite, as any float32
    kernel's (never a finite value made of exponentials of inf - inf). The other sequence is
    untouched."""
    rng = np.random.default_rng(2)
    case = ref.decode_case(rng, B=2, Hq=8, Hkv=2, D=16, block_size=4, num_blocks=12, max_len=11)
    single = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in case.items()}
    huge = dict(single, q=single["q"].copy(), k_cache=single["k_cache"] * np.float32(1e20))
    huge["q"][0] *= np.float32(1e20)  # sequence 0's scores overflow; sequence 1's are ~1e20, finite
    got = cpu_decode.paged_attention_decode(**huge)
    assert not np.isfinite(got[0]).any()
    np.testing.assert_allclose(got[1], ref.paged_attention_decode(**dict(case, k_cache=case["k_cache"] * 1e20))[1],
                               rtol=1e-5, atol=1e-5 * np.abs(case["v_cache"]).max())


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
    nan_read, inf_read, nan_unread = _decode_inputs(), _decode_inputs(), _decode_inputs()
    nan_read["k_cache"][0, 2, 1, 3] = np.nan  # block 0 is every sequence's first block
    inf_read["v_cache"][0, 0, 0, 0] = -np.inf
    key_weight_zero = _decode_inputs()  # a score of -inf: a weight of 0, the output finite
    key_weight_zero["k_cache"][0, 1, 0, :] = -np.inf * np.sign(key_weight_zero["q"][0, 0])
    nan_unread["k_cache"][1:] = nan_unread["v_cache"][1:] = np.nan  # no table names blocks 1..5
    return [("NaN in a key row read", nan_read, "k_cache"),
            ("inf in a value row read", inf_read, "v_cache"),
            ("inf in a key row read, its weight 0", key_weight_zero, "k_cache"),
            ("NaN only in blocks no sequence reads", nan_unread, None),
            ("block id out of range", out_of_range, "block_tables"),
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
def test_bad_decode_input_raises_naming_the_argument(impl, what, inputs, name):
    if name is None:
        if impl is cupy_decode.paged_attention_decode:
            pytest.importorskip("cupy", reason="the cupy backend needs cupy and a GPU to run")
        assert impl(**inputs).shape == inputs["q"].shape
        return
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(**inputs)


@pytest.mark.parametrize("impl", DECODERS, ids=["ref", "numba-cpu", "numba-cuda", "cupy"])
def test_decode_of_no_sequence_is_empty(impl):
    """A batch of 0 sequences: an empty (0, Hq, D) output, as torch gives."""
    inputs = _decode_inputs(B=0, lens=())
    inputs = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in inputs.items()}
    out = impl(**inputs)
    assert out.shape == (0, 4, 8) and out.dtype == np.float32


def test_cupy_partition_size_is_checked_before_any_kernel():
    with pytest.raises(InputError, match="^partition_size:"):
        cupy_decode.paged_attention_decode(**_decode_inputs(), partition_size=0)


@pytest.mark.crosscheck
def test_paged_decode_matches_torch_sdpa_on_gathered_cache():
    torch = pytest.importorskip("torch", reason="crosscheck against torch SDPA needs torch")
    rng = np.random.default_rng(3)
    case = ref.decode_case(rng, B=3, Hq=8, Hkv=2, D=32, block_size=16, num_blocks=20, max_len=90)
    got = ref.paged_attention_decode(**case)
    for b in range(3):
        n = int(case["seq_lens"][b])
        k = torch.from_numpy(gather_cache(case["k_cache"], case["block_tables"][b], n))
        v = torch.from_numpy(gather_cache(case["v_cache"], case["block_tables"][b], n))
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
    got = cupy_decode.paged_attention_decode(**cast, partition_size=partition_size).astype(np.float64)
    u = {"float32": 2.0 ** -24, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}[dtype]
    np.testing.assert_allclose(got, want, rtol=0, atol=4 * u * np.abs(want).max() + 64 * 2.0 ** -24)
