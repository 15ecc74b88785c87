"""Embedding lookup: bad input (on every backend, in a child process, where a gather reached
with an out-of-range id cannot take the test runner down), the Gemma normaliser, and the
cross-check against torch."""
import math

import numpy as np
import pytest

import llmref
from llmref.backends import availability
from llmref.ref.embedding import embedding_normalizer
from llmref.spec import load_spec, resolve

BACKENDS = ["ref", "numba-cpu", "numba-cuda"]

BAD = [
    ("id_equal_to_vocab", {"ids": np.array([0, 5]), "weight": np.ones((5, 3))}, "ids"),
    ("id_far_out", {"ids": np.array([1 << 40]), "weight": np.ones((5, 3))}, "ids"),
    ("negative_id", {"ids": np.array([[-1, 0]]), "weight": np.ones((5, 3))}, "ids"),
    ("float_ids", {"ids": np.array([0.0, 1.0]), "weight": np.ones((5, 3))}, "ids"),
    ("ids_with_empty_vocab", {"ids": np.array([0]), "weight": np.ones((0, 3))}, "ids"),
    ("weight_rank_1", {"ids": np.array([0]), "weight": np.ones(5)}, "weight"),
    ("weight_nan", {"ids": np.array([0]), "weight": np.full((2, 3), np.nan)}, "weight"),
    ("weight_inf_in_a_row_read", {"ids": np.array([[0, 3]]), "weight": np.where(np.arange(15).reshape(5, 3) == 10,
                                                                                np.inf, 1.0)}, "weight"),
    ("normalizer_unknown", {"ids": np.array([0]), "weight": np.ones((2, 3)), "normalizer": "sqrt"},
     "normalizer"),
    ("normalizer_not_text", {"ids": np.array([0]), "weight": np.ones((2, 3)), "normalizer": 2.0},
     "normalizer"),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_raises_input_error_naming_the_argument(backend, probe):
    """Every backend checks through the reference's embedding_args before a kernel runs;
    out-of-range ids never reach the gather."""
    spec = load_spec("embedding")
    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
    results = probe(spec.ref if backend == "ref" else spec.accel[backend]["impl"],
                    [(label, kwargs) for label, kwargs, _ in BAD])
    wrong = {label: results.get(label) for label, _, name in BAD if results.get(label) != ("InputError", name)}
    assert not wrong, wrong


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_no_id_reads_are_not_looked_at(backend):
    """The spec's convention: NaN and inf are errors only in the rows that ids reads (a
    serving vocabulary's other rows are not the call's business)."""
    spec = load_spec("embedding")
    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
    weight = np.arange(15, dtype=np.float32).reshape(5, 3)
    weight[[1, 4]] = [np.nan, np.inf, -np.inf]  # rows 1 and 4, which no id reads
    ids = np.array([[0, 3, 2], [2, 2, 0]])
    fn = resolve(spec.ref if backend == "ref" else spec.accel[backend]["impl"])
    assert np.array_equal(np.asarray(fn(ids=ids, weight=weight)), weight[ids])


def test_gemma_normalizer_values():
    """Research notes sec. 7.4 (HF PR 29402): sqrt(3072) is 55.5 in bfloat16, 55.4375 in float16."""
    assert embedding_normalizer(3072, "bfloat16") == 55.5
    assert embedding_normalizer(3072, "float16") == 55.4375
    assert embedding_normalizer(3072, "float64") == math.sqrt(3072)


# --- cross-check against torch: a correct alternative implementation passes the goldens ---

def torch_embedding(ids, weight, normalizer="none"):
    """F.embedding, times Gemma's torch.tensor(D ** 0.5, dtype=...) when a normaliser is named."""
    torch = pytest.importorskip("torch", reason="torch is the independent implementation cross-checked")
    y = torch.nn.functional.embedding(torch.from_numpy(ids), torch.from_numpy(weight))
    if normalizer != "none":
        y = y * torch.tensor(weight.shape[1] ** 0.5, dtype=getattr(torch, normalizer)).to(y.dtype)
    return y.numpy()


@pytest.mark.crosscheck
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_passes_the_goldens(dtype):
    report = llmref.audit("embedding", torch_embedding, dtype=dtype, label="torch embedding")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]
