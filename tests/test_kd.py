"""Distillation losses: analytic gradients vs central differences, torch cross-checks, bad input
on every backend (in a child process, where a kernel reached with bad labels or shapes cannot
take the test runner down)."""
import numpy as np
import pytest

import llmref
from llmref.accel.numba_cpu import kd as kd_cpu
from llmref.ref import kd
from llmref.spec import resolve

BACKENDS = {"ref": "llmref.ref.kd", "numba-cpu": "llmref.accel.numba_cpu.kd",
            "numba-cuda": "llmref.accel.numba_cuda.kd"}

KIND_BETAS = [("hinton", 0.5), ("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.3),
              ("jsd", 0.0), ("jsd", 1.0)]


def _batch(seed=0, b=2, l=3, v=7):
    rng = np.random.default_rng(seed)
    zs, zt = rng.normal(0, 2, (b, l, v)), rng.normal(0, 2, (b, l, v))
    labels = rng.integers(0, v, (b, l))
    labels[0, 1] = -100
    mask = np.ones((b, l), dtype=bool)
    mask[1, 2] = False
    return zs, zt, labels, mask


@pytest.mark.parametrize("kind,beta", KIND_BETAS)
def test_gradient_matches_central_differences(kind, beta):
    """d loss / d z_s against (L(z + h e) - L(z - h e)) / 2h in float64; the truncation error
    is O(h^2 * L''') ~ 1e-12 and the cancellation error O(eps * L / h) ~ 1e-10 at h = 1e-6."""
    zs, zt, labels, mask = _batch()
    kw = dict(kind=kind, temperature=1.7, alpha=0.3, beta=beta)
    grad = kd.kd_loss(zs, zt, labels, mask, **kw)["grad"]
    h = 1e-6
    numeric = np.zeros_like(zs)
    for i in np.ndindex(zs.shape):
        up, down = zs.copy(), zs.copy()
        up[i] += h
        down[i] -= h
        numeric[i] = (kd.kd_loss(up, zt, labels, mask, **kw)["loss"][0]
                      - kd.kd_loss(down, zt, labels, mask, **kw)["loss"][0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, atol=1e-8)
    assert np.all(grad[0, 1] == 0) and np.all(grad[1, 2] == 0)  # invalid tokens


@pytest.mark.parametrize("kind,beta", KIND_BETAS)
def test_numba_cpu_agrees_with_reference(kind, beta):
    zs, zt, labels, mask = _batch(seed=3)
    kw = dict(kind=kind, temperature=2.5, alpha=0.6, beta=beta)
    ref, fast = kd.kd_loss(zs, zt, labels, mask, **kw), kd_cpu.kd_loss(zs, zt, labels, mask, **kw)
    np.testing.assert_allclose(fast["loss"], ref["loss"], rtol=1e-12)
    np.testing.assert_allclose(fast["grad"], ref["grad"], rtol=1e-10, atol=1e-14)


def test_reduction_is_per_valid_token():
    """Adding masked-out tokens (any values) changes neither the loss nor the valid rows' grad."""
    zs, zt, labels, mask = _batch()
    base = kd.kd_loss(zs, zt, labels, mask)
    rng = np.random.default_rng(9)
    zs2 = np.concatenate([zs, rng.normal(size=(1,) + zs.shape[1:])])
    zt2 = np.concatenate([zt, rng.normal(size=(1,) + zt.shape[1:])])
    more = kd.kd_loss(zs2, zt2, np.concatenate([labels, np.zeros((1, 3), np.int64)]),
                      np.concatenate([mask, np.zeros((1, 3), bool)]))
    np.testing.assert_allclose(more["loss"], base["loss"], rtol=1e-14)
    np.testing.assert_allclose(more["grad"][:2], base["grad"], rtol=1e-14)


def test_hinton_gradient_scale_matches_the_paper():
    """Hinton et al. sec. 2.1: at high T with zero-mean logits the soft gradient is about
    (z_s - z_t) / (V T^2) per token; with T^2 it is about (z_s - z_t) / V, independent of T."""
    rng = np.random.default_rng(1)
    v = 50
    zs, zt = rng.normal(0, 1, (1, 1, v)), rng.normal(0, 1, (1, 1, v))
    zs -= zs.mean()
    zt -= zt.mean()
    out = kd.kd_loss(zs, zt, np.zeros((1, 1), np.int64), np.ones((1, 1), bool), temperature=100.0,
                     alpha=1.0)
    np.testing.assert_allclose(out["grad"], (zs - zt) / v, rtol=0.05, atol=1e-4)


def test_features_and_attention_gradients():
    rng = np.random.default_rng(2)
    hs, ht, w = rng.normal(size=(5, 3)), rng.normal(size=(5, 4)), rng.normal(size=(4, 3))
    out = kd.kd_feature(hs, ht, w)
    h = 1e-6
    for name, arr, key in (("hs", hs, "grad_student"), ("w", w, "grad_projection")):
        numeric = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            up, down = arr.copy(), arr.copy()
            up[i] += h
            down[i] -= h
            args_up = (up, ht, w) if name == "hs" else (hs, ht, up)
            args_down = (down, ht, w) if name == "hs" else (hs, ht, down)
            numeric[i] = (kd.kd_feature(*args_up)["loss"][0] - kd.kd_feature(*args_down)["loss"][0]) / (2 * h)
        np.testing.assert_allclose(out[key], numeric, atol=1e-8)
    maps = rng.normal(size=(2, 1, 3, 4, 4))
    a_s, a_t = (np.exp(m) / np.exp(m).sum(-1, keepdims=True) for m in maps)
    for kind in ("mse", "kl"):
        out = kd.kd_attention(a_s, a_t, kind=kind)
        numeric = np.zeros_like(a_s)
        for i in np.ndindex(a_s.shape):
            up, down = a_s.copy(), a_s.copy()
            up[i] += h
            down[i] -= h
            numeric[i] = (kd.kd_attention(up, a_t, kind)["loss"][0] - kd.kd_attention(down, a_t, kind)["loss"][0]) / (2 * h)
        np.testing.assert_allclose(out["grad"], numeric, atol=1e-7)


def _torch_losses(torch, zs, zt, labels, mask, kind, temperature, alpha, beta):
    """The same losses written with torch primitives (kl_div, cross_entropy, logsumexp)."""
    F = torch.nn.functional
    zs = torch.tensor(zs, requires_grad=True)
    zt = torch.tensor(zt)
    valid = torch.tensor(mask) & (torch.tensor(labels) != -100)
    s = F.log_softmax(zs / temperature, -1)[valid]  # (n_valid, V)
    t = F.log_softmax(zt / temperature, -1)[valid]
    n = valid.sum()
    if kind == "hinton" or kind == "forward_kl" or (kind == "jsd" and beta == 0):
        soft = F.kl_div(s, t, log_target=True, reduction="sum") / n  # KL(p_T || q_S)
    elif kind == "reverse_kl" or (kind == "jsd" and beta == 1):
        soft = F.kl_div(t, s, log_target=True, reduction="sum") / n
    else:  # TRL generalized_jsd_loss
        m = torch.logsumexp(torch.stack([s + np.log(1 - beta), t + np.log(beta)]), dim=0)
        soft = (beta * F.kl_div(m, t, log_target=True, reduction="sum")
                + (1 - beta) * F.kl_div(m, s, log_target=True, reduction="sum")) / n
    if kind == "hinton":
        hard_labels = torch.where(valid, torch.tensor(labels), torch.tensor(-100))
        hard = F.cross_entropy(zs.reshape(-1, zs.shape[-1]), hard_labels.reshape(-1), ignore_index=-100)
        loss = alpha * temperature ** 2 * soft + (1 - alpha) * hard
    else:
        loss = soft
    loss.backward()
    return loss.item(), zs.grad.numpy()


@pytest.mark.crosscheck
@pytest.mark.parametrize("kind,beta", KIND_BETAS)
def test_against_torch_kl_div_cross_entropy_and_autograd(kind, beta):
    torch = pytest.importorskip("torch", reason="torch is the cross-check oracle")
    zs, zt, labels, mask = _batch(seed=5, b=3, l=4, v=11)
    ours = kd.kd_loss(zs, zt, labels, mask, kind=kind, temperature=2.0, alpha=0.4, beta=beta)
    loss, grad = _torch_losses(torch, zs, zt, labels, mask, kind, 2.0, 0.4, beta)
    np.testing.assert_allclose(ours["loss"][0], loss, rtol=1e-12)
    np.testing.assert_allclose(ours["grad"], grad, rtol=1e-10, atol=1e-15)


@pytest.mark.crosscheck
def test_feature_and_attention_losses_against_torch():
    torch = pytest.importorskip("torch", reason="torch is the cross-check oracle")
    F = torch.nn.functional
    rng = np.random.default_rng(8)
    hs, ht, w = rng.normal(size=(6, 3)), rng.normal(size=(6, 5)), rng.normal(size=(5, 3))
    ths, tw = torch.tensor(hs, requires_grad=True), torch.tensor(w, requires_grad=True)
    loss = F.mse_loss(ths @ tw.T, torch.tensor(ht)) * ht.shape[1] / 2  # = sum / 2N
    loss.backward()
    ours = kd.kd_feature(hs, ht, w)
    np.testing.assert_allclose(ours["loss"][0], loss.item(), rtol=1e-13)
    np.testing.assert_allclose(ours["grad_student"], ths.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours["grad_projection"], tw.grad.numpy(), rtol=1e-12)
    maps = kd.attention_maps_case(rng, 2, 3, 4, 5)
    a_s = torch.tensor(maps["student_attention"], requires_grad=True)
    a_t = torch.tensor(maps["teacher_attention"])
    kl = F.kl_div(a_s.log(), a_t, reduction="sum") / (2 * 3 * 4)  # KL(A_t || A_s) per row
    kl.backward()
    ours = kd.kd_attention(maps["student_attention"], maps["teacher_attention"], kind="kl")
    np.testing.assert_allclose(ours["loss"][0], kl.item(), rtol=1e-13)
    np.testing.assert_allclose(ours["grad"], a_s.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("kind,beta", KIND_BETAS)
def test_numba_cuda_agrees_with_reference(kind, beta):
    from llmref.backends import availability

    ok, why = availability("numba-cuda")
    if not ok:
        pytest.skip(f"numba-cuda unavailable: {why}")
    from llmref.accel.numba_cuda import kd as kd_cuda

    zs, zt, labels, mask = _batch(seed=4)
    kw = dict(kind=kind, temperature=1.5, alpha=0.25, beta=beta)
    ref, gpu = kd.kd_loss(zs, zt, labels, mask, **kw), kd_cuda.kd_loss(zs, zt, labels, mask, **kw)
    np.testing.assert_allclose(gpu["loss"], ref["loss"], rtol=1e-12)
    np.testing.assert_allclose(gpu["grad"], ref["grad"], rtol=1e-10, atol=1e-14)


# --- Bad input on every backend ------------------------------------------------------------


def _loss_args(**change):
    zs, zt, labels, mask = _batch()
    args = dict(student_logits=zs, teacher_logits=zt, labels=labels, mask=mask, kind="hinton",
                temperature=2.0, alpha=0.5, beta=0.5, ignore_index=-100)
    args.update(change)
    return args


def _feature_args(**change):
    args = dict(student_features=np.zeros((5, 3)), teacher_features=np.zeros((5, 4)),
                projection=np.zeros((4, 3)))
    args.update(change)
    return args


def _attention_args(**change):
    args = dict(student_attention=np.full((1, 1, 2, 2), 0.5), teacher_attention=np.full((1, 1, 2, 2), 0.5),
                kind="kl")
    args.update(change)
    return args


BAD = {
    "kd_loss": (_loss_args, [
        ("temperature_zero", {"temperature": 0.0}, "temperature"),
        ("temperature_negative", {"temperature": -1.0}, "temperature"),
        ("alpha_above_one", {"alpha": 1.5}, "alpha"),
        ("alpha_text", {"alpha": "half"}, "alpha"),
        ("beta_negative", {"beta": -0.1}, "beta"),
        ("kind", {"kind": "kl"}, "kind"),
        ("label_above_vocab", {"labels": np.array([[0, 7, 1], [2, 3, 4]])}, "labels"),
        ("label_negative", {"labels": np.array([[0, -5, 1], [2, 3, 4]])}, "labels"),
        ("labels_float", {"labels": np.zeros((2, 3))}, "labels"),
        ("labels_shape", {"labels": np.zeros((2, 4), np.int64)}, "labels"),
        ("ignore_index_float", {"ignore_index": -100.0}, "ignore_index"),
        ("mask_all_false", {"mask": np.zeros((2, 3), bool)}, "mask"),
        ("mask_int", {"mask": np.ones((2, 3), np.int64)}, "mask"),
        ("mask_shape", {"mask": np.ones((3, 2), bool)}, "mask"),
        ("student_nan", {"student_logits": np.full((2, 3, 7), np.nan)}, "student_logits"),
        ("student_1d", {"student_logits": np.zeros(7), "teacher_logits": np.zeros(7)}, "student_logits"),
        ("no_classes", {"student_logits": np.zeros((2, 3, 0)), "teacher_logits": np.zeros((2, 3, 0))},
         "student_logits"),
        ("no_tokens", {"student_logits": np.zeros((0, 3, 7)), "teacher_logits": np.zeros((0, 3, 7)),
                       "labels": np.zeros((0, 3), np.int64), "mask": np.zeros((0, 3), bool)}, "mask"),
        ("teacher_vocab", {"teacher_logits": np.zeros((2, 3, 6))}, "teacher_logits"),
    ]),
    "kd_feature": (_feature_args, [
        ("projection_shape", {"projection": np.zeros((4, 4))}, "projection"),
        ("teacher_rows", {"teacher_features": np.zeros((6, 4))}, "teacher_features"),
        ("student_inf", {"student_features": np.full((5, 3), np.inf)}, "student_features"),
        ("student_3d", {"student_features": np.zeros((5, 3, 1))}, "student_features"),
        ("no_rows", {"student_features": np.zeros((0, 3)), "teacher_features": np.zeros((0, 4))},
         "student_features"),
    ]),
    "kd_attention": (_attention_args, [
        ("kind", {"kind": "l1"}, "kind"),
        ("negative", {"student_attention": -np.ones((1, 1, 2, 2))}, "student_attention"),
        ("kl_zero_support", {"student_attention": np.array([[[[1.0, 0.0], [0.5, 0.5]]]])}, "student_attention"),
        ("teacher_shape", {"teacher_attention": np.ones((1, 1, 2, 3))}, "teacher_attention"),
        ("rank_3", {"student_attention": np.full((1, 2, 2), 0.5)}, "student_attention"),
        ("empty_rows", {"student_attention": np.zeros((1, 1, 0, 2)), "teacher_attention": np.zeros((1, 1, 0, 2))},
         "student_attention"),
        ("empty_keys", {"student_attention": np.zeros((1, 1, 2, 0)), "teacher_attention": np.zeros((1, 1, 2, 0)),
                        "kind": "mse"}, "student_attention"),
        # mse: numba-cpu reads the values in its own pass and asks kd_attention_args for the error
        ("mse_student_nan", {"student_attention": np.array([[[[0.5, np.nan], [0.5, 0.5]]]]), "kind": "mse"},
         "student_attention"),
        ("mse_teacher_inf", {"teacher_attention": np.array([[[[0.5, 0.5], [np.inf, 0.5]]]]), "kind": "mse"},
         "teacher_attention"),
        ("mse_both_nan", {"student_attention": np.full((1, 1, 2, 2), np.nan),
                          "teacher_attention": np.full((1, 1, 2, 2), np.nan), "kind": "mse"}, "student_attention"),
        ("mse_student_negative", {"student_attention": np.array([[[[0.5, -0.5], [0.5, 0.5]]]]), "kind": "mse"},
         "student_attention"),
        ("mse_teacher_negative", {"teacher_attention": np.array([[[[0.5, 0.5], [0.5, -1e-30]]]]), "kind": "mse"},
         "teacher_attention"),
    ]),
}


def _available(backend):
    from llmref.backends import availability

    if backend != "ref":
        ok, why = availability(backend)
        if not ok:
            pytest.skip(f"{backend} unavailable: {why}")


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("entry", list(BAD))
def test_bad_input_raises_input_error_naming_the_argument(entry, backend, probe):
    """Every backend checks through the reference's kd_*_args before a kernel runs."""
    _available(backend)
    make, table = BAD[entry]
    results = probe(f"{BACKENDS[backend]}:{entry}", [(label, make(**change)) for label, change, _ in table])
    wrong = {label: results.get(label) for label, _, name in table if results.get(label) != ("InputError", name)}
    assert not wrong, wrong


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_zero_width_features_are_a_plain_loss(backend):
    """Ds = 0: the projection maps nothing, r = -h_t, and the gradients are empty."""
    _available(backend)
    h_t = np.arange(8.0).reshape(2, 4)
    out = resolve(f"{BACKENDS[backend]}:kd_feature")(np.zeros((2, 0)), h_t, np.zeros((4, 0)))
    np.testing.assert_allclose(out["loss"], [(h_t ** 2).sum() / 4])
    assert out["grad_student"].shape == (2, 0) and out["grad_projection"].shape == (4, 0)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_mse_attention_finds_bad_values_anywhere_in_long_rows_and_lets_an_overflow_stand(backend):
    """A NaN, inf or negative entry at the start, past a vector body or at the tail of a
    1031-wide map row is the error naming its map; -0.0 is not negative; and finite maps
    whose squares overflow float32 give the reference's inf loss, not an error."""
    _available(backend)
    fn, ref = resolve(f"{BACKENDS[backend]}:kd_attention"), kd.kd_attention
    maps = kd.attention_maps_case(np.random.default_rng(0), 1, 2, 3, 1031)
    a_s, a_t = (maps[k].astype(np.float32) for k in ("student_attention", "teacher_attention"))
    a_s[0, 1, 2, 7] = -0.0
    out, expected = fn(a_s, a_t, kind="mse"), ref(a_s.astype(np.float64), a_t.astype(np.float64), kind="mse")
    np.testing.assert_allclose(out["grad"], expected["grad"], rtol=1e-6, atol=1e-12)
    for name, value in (("student_attention", np.nan), ("student_attention", -1e-3),
                        ("teacher_attention", np.inf), ("teacher_attention", -np.inf)):
        for place in ((0, 0, 0, 0), (0, 1, 1, 517), (0, 1, 2, 1030)):
            bad = {"student_attention": a_s.copy(), "teacher_attention": a_t.copy()}
            bad[name][place] = value
            with pytest.raises(llmref.InputError, match=f"^{name}:"):
                fn(**bad, kind="mse")
    huge = np.full((1, 1, 2, 2), 3e38, np.float32)
    loss = fn(huge, np.zeros_like(huge), kind="mse")["loss"]
    assert np.isinf(loss).all() and np.isinf(ref(huge, np.zeros_like(huge), kind="mse")["loss"]).all()
