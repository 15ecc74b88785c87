"""kv_write: bad input, no token, exactness (three ulps off fails every case), and reading
the written rows back through the block table."""
import numpy as np
import pytest

from llmref.accel.cupy import kv_write as cupy_write
from llmref.accel.numba_cpu import kv_write as cpu_write
from llmref.accel.numba_cuda import kv_write as cuda_write
from llmref.errors import InputError
from llmref.ref import kv_write as ref
from test_paged_attention_decode import gather_cache

WRITERS = [ref.kv_write, cpu_write.kv_write, cuda_write.kv_write, cupy_write.kv_write]


def _write_inputs(slots):
    rng = np.random.default_rng(1)
    return {"key": rng.normal(size=(len(slots), 2, 4)), "value": rng.normal(size=(len(slots), 2, 4)),
            "slot_mapping": np.array(slots, np.int64),
            "k_cache": rng.normal(size=(3, 4, 2, 4)), "v_cache": rng.normal(size=(3, 4, 2, 4))}


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
    np.testing.assert_array_equal(gather_cache(k_out, table, n), key)
    np.testing.assert_array_equal(gather_cache(v_out, table, n), value)
