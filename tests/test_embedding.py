"""Embedding and LM head: bad input, the Gemma normaliser, and cross-checks against torch."""
import math

import numpy as np
import pytest

import llmref
from llmref import InputError
from llmref.backends import implementation
from llmref.ref import embedding as ref
from llmref.spec import load_spec, resolve

BACKENDS = ["ref", "numba-cpu", "numba-cuda"]


def impl(component, backend):
    spec = load_spec(component)
    return resolve(spec.ref) if backend == "ref" else implementation(spec, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ids, why", [
    (np.array([0, 5]), "id == V"),
    (np.array([[-1, 0]]), "negative id"),
    (np.array([0.0, 1.0]), "float ids"),
])
def test_embedding_rejects_bad_ids(ids, why, backend):
    with pytest.raises(InputError, match=r"^ids:"):
        impl("embedding", backend)(ids=ids, weight=np.ones((5, 3)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_embedding_rejects_bad_weight_and_normalizer(backend):
    fn = impl("embedding", backend)
    with pytest.raises(InputError, match=r"^weight:"):
        fn(ids=np.array([0]), weight=np.ones(5))  # rank 1
    with pytest.raises(InputError, match=r"^weight:"):
        fn(ids=np.array([0]), weight=np.full((2, 3), np.nan))
    with pytest.raises(InputError, match=r"^normalizer:"):
        fn(ids=np.array([0]), weight=np.ones((2, 3)), normalizer="sqrt")


@pytest.mark.parametrize("backend", BACKENDS)
def test_lm_head_rejects_mismatched_inputs(backend):
    fn = impl("lm_head", backend)
    h, m = np.ones((2, 4)), np.ones((6, 4))
    with pytest.raises(InputError, match=r"^output_weight:"):
        fn(h=h, embedding=m, output_weight=np.ones((6, 5)))  # D mismatch
    with pytest.raises(InputError, match=r"^embedding:"):
        fn(h=h, embedding=m.astype(np.float32), output_weight=m)  # dtype mismatch
    with pytest.raises(InputError, match=r"^h:"):
        fn(h=np.array([[np.inf, 0, 0, 0]]), embedding=m, output_weight=m)
    with pytest.raises(InputError, match=r"^embedding:"):
        fn(h=h, embedding=np.ones(4), output_weight=m)  # rank 1
    with pytest.raises(InputError, match=r"^tied:"):
        fn(h=h, embedding=m, output_weight=m, tied="yes")


def test_gemma_normalizer_values():
    """Research notes sec. 7.4 (HF PR 29402): sqrt(3072) is 55.5 in bfloat16, 55.4375 in float16."""
    assert ref.embedding_normalizer(3072, "bfloat16") == 55.5
    assert ref.embedding_normalizer(3072, "float16") == 55.4375
    assert ref.embedding_normalizer(3072, "float64") == math.sqrt(3072)


def test_tied_head_of_an_embedded_token_scores_it_by_its_squared_norm():
    """logits of h = E[t] under the tied head are E @ E[t]; entry t is |E[t]|^2."""
    e = np.random.default_rng(1).normal(size=(7, 5))
    logits = ref.lm_head(ref.embedding(np.array([3]), e), e, np.zeros((7, 5)), tied=True)
    np.testing.assert_allclose(logits[0, 3], np.dot(e[3], e[3]), rtol=1e-15)


# --- cross-checks against torch: a correct alternative implementation passes the goldens ---

def _torch():
    return pytest.importorskip("torch", reason="torch is the independent implementation cross-checked")


def torch_embedding(ids, weight, normalizer="none"):
    """F.embedding, times Gemma's torch.tensor(D ** 0.5, dtype=...) when a normaliser is named."""
    torch = _torch()
    y = torch.nn.functional.embedding(torch.from_numpy(ids), torch.from_numpy(weight))
    if normalizer != "none":
        y = y * torch.tensor(weight.shape[1] ** 0.5, dtype=getattr(torch, normalizer)).to(y.dtype)
    return y.numpy()


def torch_lm_head(h, embedding, output_weight, tied=False):
    torch = _torch()
    w = torch.from_numpy(embedding if tied else output_weight)
    return torch.nn.functional.linear(torch.from_numpy(h), w).numpy()


@pytest.mark.crosscheck
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("component, fn", [("embedding", torch_embedding), ("lm_head", torch_lm_head)])
def test_torch_passes_the_goldens(component, fn, dtype):
    report = llmref.audit(component, fn, dtype=dtype, label=f"torch {component}")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]
