"""Invariants need no golden: they hold for the reference and every accelerated backend (the
CUDA simulator included), and they catch a broken block-table walk, a batch-dependent kernel
and a nondeterministic one that the properties are about."""
import numpy as np
import pytest

from llmref.backends import availability, implementation
from llmref.check import invariant_plan
from llmref.invariants import run_invariants
from llmref.spec import all_specs, load_spec, resolve

WITH_INVARIANTS = [s.id for s in all_specs() if s.invariants]
CASES = [(c, b) for c in WITH_INVARIANTS for b in ("reference", "numba-cpu", "numba-cuda")
         if b == "reference" or b in load_spec(c).accel]


def test_the_attention_norm_softmax_and_sampling_specs_declare_invariants():
    assert {"sdpa", "online_attention", "paged_attention_decode", "softmax", "rmsnorm",
            "sample_tokens"} <= set(WITH_INVARIANTS)


@pytest.mark.parametrize("component,backend", CASES, ids=[f"{c}-{b}" for c, b in CASES])
def test_invariants_hold(component, backend):
    spec = load_spec(component)
    if backend == "reference":
        fn, dtype, cases = resolve(spec.ref), "float32", None
    else:
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
        fn = implementation(spec, backend)
        dtype, cases = invariant_plan(spec, backend)
    results = run_invariants(spec, fn, dtype, cases)
    assert results
    assert [r.to_dict() for r in results if not r.ok] == []


def _contiguous_block_walk(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    """A paged decode that walks the pool from each sequence's first block, as if every
    sequence owned consecutive physical blocks."""
    walked = block_tables[:, :1] + np.arange(block_tables.shape[1])
    walked = np.minimum(walked, k_cache.shape[0] - 1).astype(block_tables.dtype)
    return resolve(load_spec("paged_attention_decode").ref)(q, k_cache, v_cache, walked, seq_lens, scale)


def _batch_rms(x, weight, eps=1e-6, weight_offset=0.0):
    """RMSNorm with one RMS for the whole batch instead of one per row."""
    wide = x.astype(np.float64)
    rms = np.sqrt(np.mean(wide * wide) + eps)
    return (wide / rms * (weight.astype(np.float64) + weight_offset)).astype(x.dtype)


def _noisy_softmax(x, axis=-1):
    """A softmax that is right to a few ulps, differently on each call."""
    y = resolve(load_spec("softmax").ref)(x, axis)
    bits = y.view(np.uint32 if y.dtype == np.float32 else np.uint64)
    return (bits + np.random.default_rng().integers(0, 2, size=bits.shape).astype(bits.dtype)).view(y.dtype)


@pytest.mark.parametrize("component,fn,invariant", [
    ("paged_attention_decode", _contiguous_block_walk, "block_permutation"),
    ("rmsnorm", _batch_rms, "batch_independent"),
    ("softmax", _noisy_softmax, "deterministic"),
])
def test_invariants_catch_what_they_are_about(component, fn, invariant):
    results = run_invariants(load_spec(component), fn, "float32")
    broken = [r for r in results if not r.ok]
    assert any(r.invariant == invariant for r in broken), [(r.invariant, r.ok) for r in results]
