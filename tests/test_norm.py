"""Norms: bad input (on every backend, in a child process), properties, and cross-checks
against torch on the golden inputs."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import llmref
from llmref import InputError
from llmref.backends import availability, implementation
from llmref.ref import norm as ref
from llmref.spec import load_spec, resolve

BACKENDS = ["ref", "numba-cpu", "numba-cuda"]


def impl(component, backend):
    spec = load_spec(component)
    return resolve(spec.ref) if backend == "ref" else implementation(spec, backend)


def _args(component, **override):
    """Valid float64 arguments for a (2, 4) input, with `override` replacing some."""
    x, v = np.arange(8.0).reshape(2, 4), np.ones(4)
    args = {"layernorm": {"x": x, "weight": v, "bias": v},
            "rmsnorm": {"x": x, "weight": v},
            "batchnorm": {"x": x.reshape(2, 4, 1), "weight": v, "bias": v,
                          "running_mean": np.zeros(4), "running_var": v}}[component]
    args.update(override)
    return args


BAD = [
    ("layernorm", {"x": np.float64(1.0)}, "x"),                      # rank 0
    ("layernorm", {"x": np.array([[1.0, np.nan, 0.0, 1.0]])}, "x"),
    ("layernorm", {"weight": np.ones(3)}, "weight"),                 # wrong length
    ("layernorm", {"bias": np.ones((4, 1))}, "bias"),                # wrong rank
    ("layernorm", {"weight": np.ones(4, np.float32)}, "weight"),     # wrong dtype
    ("layernorm", {"eps": -1.0}, "eps"),
    ("rmsnorm", {"x": np.ones((2, 4), np.int64)}, "x"),             # integer dtype
    ("rmsnorm", {"weight": np.array([1.0, np.inf, 1.0, 1.0])}, "weight"),
    ("rmsnorm", {"weight_offset": "one"}, "weight_offset"),
    ("batchnorm", {"x": np.ones(4)}, "x"),                           # no channel axis
    ("batchnorm", {"x": np.ones((1, 4, 1))}, "x"),                   # one value per channel
    ("batchnorm", {"running_var": -np.ones(4)}, "running_var"),
    ("batchnorm", {"running_mean": np.ones(3)}, "running_mean"),
    ("batchnorm", {"bias": np.array([0.0, np.nan, 0.0, 0.0])}, "bias"),
    ("batchnorm", {"momentum": 1.5}, "momentum"),
    ("batchnorm", {"training": "yes"}, "training"),
    ("batchnorm", {"x": np.ones((0, 4, 1))}, "x"),                   # training on no values
    ("rmsnorm", {"weight": np.ones(5)}, "weight"),                   # longer than the rows
    ("rmsnorm", {"eps": float("nan")}, "eps"),
    ("layernorm", {"x": np.ones((2, 0)), "weight": np.ones(4), "bias": np.ones(4)}, "weight"),
]


def _target(component, backend):
    spec = load_spec(component)
    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")
        return spec.accel[backend]["impl"]
    return spec.ref


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("component", ["layernorm", "rmsnorm", "batchnorm"])
def test_bad_input_names_the_argument(component, backend, probe):
    """Every backend checks through the reference's <name>_args before a kernel runs."""
    table = [(f"{name}-{i}", override, name) for i, (c, override, name) in enumerate(BAD) if c == component]
    results = probe(_target(component, backend), [(label, _args(component, **o)) for label, o, _ in table])
    wrong = {label: results.get(label) for label, _, name in table if results.get(label) != ("InputError", name)}
    assert not wrong, wrong


@pytest.mark.parametrize("component", ["layernorm", "rmsnorm"])
def test_cupy_host_code_validates_before_touching_the_gpu(component):
    """Argument checks run before cupy is imported, so they hold on a machine without one."""
    fn = implementation(load_spec(component), "cupy")
    with pytest.raises(InputError, match=r"^weight:"):
        fn(**_args(component, weight=np.ones(3)))


def test_eps_placement_vector():
    """Research notes sec. 7.2: [1, 1.0001, 0.9999, 1] with eps 1e-5 normalises to +-0.0316
    (eps inside the sqrt), not +-1.239 (eps added to the std)."""
    y = ref.layernorm(np.array([1.0, 1.0001, 0.9999, 1.0]), np.ones(4), np.zeros(4), eps=1e-5)
    np.testing.assert_allclose(y[1:3], [0.0316, -0.0316], atol=5e-5)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 16)), elements=st.floats(-10, 10)),
       st.floats(0.1, 100))
def test_norms_are_scale_invariant_without_eps(x, c):
    """With eps = 0, layernorm(c x) = layernorm(x) and rmsnorm(c x) = rmsnorm(x) for c > 0."""
    w, b = np.linspace(0.5, 1.5, x.shape[-1]), np.linspace(-1, 1, x.shape[-1])
    centred = x - x.mean(axis=-1, keepdims=True)
    if np.any(np.abs(centred).max(axis=-1) < 1e-3):
        return  # (near-)constant rows are 0/0 without eps
    np.testing.assert_allclose(ref.layernorm(c * x, w, b, eps=0.0), ref.layernorm(x, w, b, eps=0.0),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ref.rmsnorm(c * centred, w, eps=0.0), ref.rmsnorm(centred, w, eps=0.0),
                               rtol=1e-9, atol=1e-9)


def test_gemma_offset_is_one_plus_weight():
    x, w = np.random.default_rng(0).normal(size=(3, 8)), np.linspace(-0.2, 0.2, 8)
    np.testing.assert_allclose(ref.rmsnorm(x, w, weight_offset=1.0), ref.rmsnorm(x, 1.0 + w), rtol=1e-15)


def test_batchnorm_inference_returns_running_stats_unchanged():
    args = _args("batchnorm", running_mean=np.array([0.1, 0.2, 0.3, 0.4]), training=False)
    _, mean, var = ref.batchnorm(**args)
    np.testing.assert_array_equal(mean, args["running_mean"])
    np.testing.assert_array_equal(var, args["running_var"])


# --- cross-checks against torch: a correct alternative implementation passes the goldens ---

def _torch():
    return pytest.importorskip("torch", reason="torch is the independent implementation cross-checked")


def torch_layernorm(x, weight, bias, eps=1e-5):
    torch = _torch()
    return torch.nn.functional.layer_norm(torch.from_numpy(x), (x.shape[-1],), torch.from_numpy(weight),
                                          torch.from_numpy(bias), eps).numpy()


def torch_rmsnorm(x, weight, eps=1e-6, weight_offset=0.0):
    torch = _torch()
    w = weight_offset + torch.from_numpy(weight)
    return torch.nn.functional.rms_norm(torch.from_numpy(x), (x.shape[-1],), w, eps).numpy()


def torch_batchnorm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """torch updates running_mean / running_var in place; they are returned as outputs."""
    torch = _torch()
    mean, var = torch.from_numpy(running_mean.copy()), torch.from_numpy(running_var.copy())
    y = torch.nn.functional.batch_norm(torch.from_numpy(x), mean, var, torch.from_numpy(weight),
                                       torch.from_numpy(bias), training, momentum, eps)
    return y.numpy(), mean.numpy(), var.numpy()


@pytest.mark.crosscheck
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("component, fn", [("layernorm", torch_layernorm), ("rmsnorm", torch_rmsnorm),
                                           ("batchnorm", torch_batchnorm)])
def test_torch_passes_the_goldens(component, fn, dtype):
    report = llmref.audit(component, fn, dtype=dtype, label=f"torch {component}")
    assert report.passed, [(r.case, r.detail) for r in report.failures()]


@pytest.mark.parametrize("component", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("backend", BACKENDS + ["cupy"])
def test_empty_input_gives_an_empty_result_on_every_backend(component, backend):
    """No rows, or rows of length 0: nothing to normalise (torch returns an empty tensor). The
    cupy host code returns before it needs cupy or a GPU."""
    fn = impl(component, backend)
    for shape in ((0, 4), (3, 0), (2, 0, 4)):
        n = shape[-1]
        args = {"x": np.zeros(shape, np.float32), "weight": np.ones(n, np.float32)}
        if component == "layernorm":
            args["bias"] = np.zeros(n, np.float32)
        y = fn(**args)
        assert y.shape == shape and y.dtype == np.float32, shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_batchnorm_without_channels_or_samples(backend):
    """C = 0: every output is empty, in training too (n counts the values per channel); N = 0
    at inference: y is empty and the running statistics come back unchanged."""
    fn = impl("batchnorm", backend)
    y, mean, var = fn(np.zeros((3, 0, 2)), np.ones(0), np.zeros(0), np.zeros(0), np.ones(0), training=True)
    assert y.shape == (3, 0, 2) and mean.shape == var.shape == (0,)
    stats = np.array([0.5, -1.0]), np.array([2.0, 3.0])
    y, mean, var = fn(np.zeros((0, 2, 5)), np.ones(2), np.zeros(2), *stats, training=False)
    assert y.shape == (0, 2, 5)
    np.testing.assert_array_equal(mean, stats[0])
    np.testing.assert_array_equal(var, stats[1])
