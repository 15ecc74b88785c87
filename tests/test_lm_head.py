"""LM head: bad input (on every backend, in a child process), zero-size heads, the tied head,
and the cross-check against torch."""
import numpy as np
import pytest

import llmref
from llmref.backends import availability, implementation
from llmref.ref.embedding import embedding
from llmref.ref.lm_head import lm_head
from llmref.spec import load_spec, resolve

BACKENDS = ["ref", "numba-cpu", "numba-cuda"]

_H, _M = np.ones((2, 4)), np.ones((6, 4))


def _with(a, where, value):
    """A copy of a with a[where] = value."""
    a = a.copy()
    a[where] = value
    return a



BAD = [
    ("output_weight_width", {"h": _H, "embedding": _M, "output_weight": np.ones((6, 5))}, "output_weight"),
    ("embedding_width_tied", {"h": _H, "embedding": np.ones((6, 3)), "output_weight": _M, "tied": True},
     "embedding"),
    ("embedding_dtype", {"h": _H, "embedding": _M.astype(np.float32), "output_weight": _M}, "embedding"),
    ("h_inf", {"h": np.array([[np.inf, 0, 0, 0]]), "embedding": _M, "output_weight": _M}, "h"),
    ("h_scalar", {"h": np.float64(1.0), "embedding": _M, "output_weight": _M}, "h"),
    ("embedding_rank_1", {"h": _H, "embedding": np.ones(4), "output_weight": _M}, "embedding"),
    ("tied_not_bool", {"h": _H, "embedding": _M, "output_weight": _M, "tied": "yes"}, "tied"),
    ("output_weight_nan", {"h": _H, "embedding": _M, "output_weight": _with(_M, (4, 2), np.nan)},
     "output_weight"),
    ("embedding_inf_tied", {"h": _H, "embedding": _with(_M, (0, 0), -np.inf), "output_weight": _M,
                            "tied": True}, "embedding"),
    ("inf_times_zero_h", {"h": _with(_H, (slice(None), 3), 0.0), "embedding": _M,
                          "output_weight": _with(_M, (1, 3), np.inf)}, "output_weight"),
    ("unselected_nan", {"h": _H, "embedding": _with(_M, (2, 1), np.nan), "output_weight": _M}, "embedding"),
    ("nan_weight_no_rows", {"h": np.ones((0, 4)), "embedding": _M, "output_weight": _with(_M, (0, 0), np.nan)},
     "output_weight"),
]


def _available(backend):
    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_raises_input_error_naming_the_argument(backend, probe):
    """Every backend checks through the reference's lm_head_args before a kernel runs."""
    _available(backend)
    spec = load_spec("lm_head")
    results = probe(spec.ref if backend == "ref" else spec.accel[backend]["impl"],
                    [(label, kwargs) for label, kwargs, _ in BAD])
    wrong = {label: results.get(label) for label, _, name in BAD if results.get(label) != ("InputError", name)}
    assert not wrong, wrong


@pytest.mark.parametrize("backend", BACKENDS)
def test_lm_head_of_zero_width_hidden_states_is_all_zeros(backend):
    """D = 0: every logit is an empty sum; V = 0: no logits. Neither is an error."""
    _available(backend)
    spec = load_spec("lm_head")
    fn = resolve(spec.ref) if backend == "ref" else implementation(spec, backend)
    out = fn(h=np.ones((3, 0)), embedding=np.ones((5, 0)), output_weight=np.ones((5, 0)))
    assert out.shape == (3, 5) and not out.any()
    assert fn(h=np.ones((3, 4)), embedding=np.ones((0, 4)), output_weight=np.ones((0, 4))).shape == (3, 0)


def test_tied_head_of_an_embedded_token_scores_it_by_its_squared_norm():
    """logits of h = E[t] under the tied head are E @ E[t]; entry t is |E[t]|^2."""
    e = np.random.default_rng(1).normal(size=(7, 5))
    logits = lm_head(embedding(np.array([3]), e), e, np.zeros((7, 5)), tied=True)
    np.testing.assert_allclose(logits[0, 3], np.dot(e[3], e[3]), rtol=1e-15)


# --- cross-check against torch: a correct alternative implementation passes the goldens ---

def torch_lm_head(h, embedding, output_weight, tied=False):
    torch = pytest.importorskip("torch", reason="torch is the independent implementation cross-checked")
    w = torch.from_numpy(embedding if tied else output_weight)
    return torch.nn.functional.linear(torch.from_numpy(h), w).numpy()


@pytest.mark.crosscheck
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_passes_the_goldens(dtype):
    report = llmref.audit("lm_head", torch_lm_head, dtype=dtype, label="torch lm_head")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]
