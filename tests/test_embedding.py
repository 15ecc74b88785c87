"""Embedding and LM head: bad input, the Gemma normaliser, and cross-checks against torch."""
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

import llmref
from llmref.backends import availability, implementation
from llmref.ref import embedding as ref
from llmref.spec import load_spec, resolve

BACKENDS = ["ref", "numba-cpu", "numba-cuda"]


def impl(component, backend):
    spec = load_spec(component)
    return resolve(spec.ref) if backend == "ref" else implementation(spec, backend)


_PROBE = r"""
import pickle, sys
from llmref.errors import InputError
from llmref.spec import resolve
target, calls = pickle.load(sys.stdin.buffer)
fn = resolve(target)
for label, kwargs in calls:
    print("start", label, flush=True)
    try:
        fn(**kwargs)
    except InputError as exc:
        print("InputError", label, str(exc).split(":")[0], flush=True)
    except Exception as exc:
        print("other", label, type(exc).__name__, str(exc)[:200].replace(chr(10), " "), flush=True)
    else:
        print("returned", label, flush=True)
"""


def _probe(target, calls):
    """target(**kwargs) for every (label, kwargs) in a child process; {label: (outcome, detail)}.
    A gather kernel reached with an out-of-range id reads or writes out of bounds and may kill
    the process: its exit code and the label it was running then say so."""
    proc = subprocess.run([sys.executable, "-c", _PROBE], input=pickle.dumps((target, calls)),
                          capture_output=True, timeout=900)
    lines = [line.split(" ", 2) for line in proc.stdout.decode().splitlines()]
    started = [line[1] for line in lines if line[0] == "start"]
    assert proc.returncode == 0, (f"{target} exited with {proc.returncode} during "
                                  f"{started[-1] if started else '?'}: {proc.stderr.decode()[-2000:]}")
    return {line[1]: (line[0], line[2] if len(line) > 2 else "") for line in lines if line[0] != "start"}


_H, _M = np.ones((2, 4)), np.ones((6, 4))
BAD = {
    "embedding": [
        ("id_equal_to_vocab", {"ids": np.array([0, 5]), "weight": np.ones((5, 3))}, "ids"),
        ("id_far_out", {"ids": np.array([1 << 40]), "weight": np.ones((5, 3))}, "ids"),
        ("negative_id", {"ids": np.array([[-1, 0]]), "weight": np.ones((5, 3))}, "ids"),
        ("float_ids", {"ids": np.array([0.0, 1.0]), "weight": np.ones((5, 3))}, "ids"),
        ("ids_with_empty_vocab", {"ids": np.array([0]), "weight": np.ones((0, 3))}, "ids"),
        ("weight_rank_1", {"ids": np.array([0]), "weight": np.ones(5)}, "weight"),
        ("weight_nan", {"ids": np.array([0]), "weight": np.full((2, 3), np.nan)}, "weight"),
        ("normalizer_unknown", {"ids": np.array([0]), "weight": np.ones((2, 3)), "normalizer": "sqrt"},
         "normalizer"),
        ("normalizer_not_text", {"ids": np.array([0]), "weight": np.ones((2, 3)), "normalizer": 2.0},
         "normalizer"),
    ],
    "lm_head": [
        ("output_weight_width", {"h": _H, "embedding": _M, "output_weight": np.ones((6, 5))}, "output_weight"),
        ("embedding_width_tied", {"h": _H, "embedding": np.ones((6, 3)), "output_weight": _M, "tied": True},
         "embedding"),
        ("embedding_dtype", {"h": _H, "embedding": _M.astype(np.float32), "output_weight": _M}, "embedding"),
        ("h_inf", {"h": np.array([[np.inf, 0, 0, 0]]), "embedding": _M, "output_weight": _M}, "h"),
        ("h_scalar", {"h": np.float64(1.0), "embedding": _M, "output_weight": _M}, "h"),
        ("embedding_rank_1", {"h": _H, "embedding": np.ones(4), "output_weight": _M}, "embedding"),
        ("tied_not_bool", {"h": _H, "embedding": _M, "output_weight": _M, "tied": "yes"}, "tied"),
    ],
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("component", list(BAD))
def test_bad_input_raises_input_error_naming_the_argument(component, backend):
    """Every backend checks through the reference's embedding_args / lm_head_args before a
    kernel runs; out-of-range ids never reach the gather."""
    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
    target = load_spec(component).ref if backend == "ref" else load_spec(component).accel[backend]["impl"]
    results = _probe(target, [(label, kwargs) for label, kwargs, _ in BAD[component]])
    wrong = {label: results.get(label) for label, _, name in BAD[component]
             if results.get(label) != ("InputError", name)}
    assert not wrong, wrong


@pytest.mark.parametrize("backend", BACKENDS)
def test_lm_head_of_zero_width_hidden_states_is_all_zeros(backend):
    """D = 0: every logit is an empty sum; V = 0: no logits. Neither is an error."""
    fn = impl("lm_head", backend)
    out = fn(h=np.ones((3, 0)), embedding=np.ones((5, 0)), output_weight=np.ones((5, 0)))
    assert out.shape == (3, 5) and not out.any()
    assert fn(h=np.ones((3, 4)), embedding=np.ones((0, 4)), output_weight=np.ones((0, 4))).shape == (3, 0)


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
