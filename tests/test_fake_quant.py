"""fake_quant: bad input, the tie model (torch's x * (1/S) kernel passes, half away from zero
fails the exact ties), and cross-checks against torch's fake-quant and its gradient."""
import numpy as np
import pytest

from _quant import (assert_exact_ties_unmasked, assert_masks_mark_only_differing_alternatives,
                    audit_flips, failures)
from llmref import InputError
from llmref.accel.numba_cpu import fake_quant as fast
from llmref.ref import fake_quant as ref
from llmref.ref._quant import roundf

RNG = np.random.default_rng(20261123)
F32 = np.float32

# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("impl", [ref.fake_quant, fast.fake_quant])
@pytest.mark.parametrize("kwargs,name", [
    ({"scale": 0.0}, "scale"),
    ({"scale": float("nan")}, "scale"),
    ({"zero_point": 300}, "zero_point"),
    ({"zero_point": 0.5}, "zero_point"),
    ({"quant_min": 5, "quant_max": 5, "zero_point": 5}, "quant_max"),
])
def test_fake_quant_rejects_bad_params(impl, kwargs, name):
    x = RNG.normal(size=6)
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(x, x, **kwargs)


@pytest.mark.parametrize("impl", [ref.fake_quant, fast.fake_quant])
@pytest.mark.parametrize("dtype,scale", [("float32", 1e-50), ("float32", 2.0**-150), ("float32", 1e39),
                                         ("bfloat16", 1e-41), ("float16", 1e-8), ("float16", 7e4)])
def test_fake_quant_rejects_a_scale_that_rounds_to_zero_or_inf_at_the_dtype(impl, dtype, scale):
    """The spec's convention: positive and finite as given is not enough; x / S at x's dtype
    would be NaN or inf (the numba loop once raised ZeroDivisionError here)."""
    from llmref.dtypes import numpy_dtype

    x = RNG.normal(size=6).astype(numpy_dtype(dtype))
    with pytest.raises(InputError, match="^scale:"):
        impl(x, x, scale=scale)
    smallest = float(np.finfo(np.float32).smallest_subnormal)
    np.testing.assert_array_equal(impl(x.astype(np.float32), x.astype(np.float32), scale=smallest)[1], 0.0)


def test_fake_quant_rejects_mismatched_gradients():
    x = RNG.normal(size=6)
    for impl in (ref.fake_quant, fast.fake_quant):
        with pytest.raises(InputError, match="^grad_y:"):
            impl(x, x[:5])


def test_backends_validate_through_the_reference_checker():
    """Every accelerated entry point calls fake_quant_args before any kernel; none raises itself."""
    from pathlib import Path

    for module in (fast,):
        text = Path(module.__file__).read_text()
        assert "fake_quant_args(" in text and "raise InputError" not in text, module.__name__


# ----------------------------------------------------------------------------- ties


def fake_quant_reciprocal(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
    """torch's kernel in NumPy float32: zero_point + rint(x * (1.0f / scale))."""
    s = F32(scale)
    code = zero_point + np.rint(x * (F32(1) / s))
    inside = (code >= quant_min) & (code <= quant_max)
    return ((np.clip(code, quant_min, quant_max) - zero_point) * s).astype(F32), np.where(inside, grad_y, 0).astype(F32)


def test_fake_quant_reciprocal_float32_passes_and_half_away_fails_the_ties():
    report, flips = audit_flips("fake_quant", fake_quant_reciprocal)
    assert report.passed, failures(report)
    print("fake_quant x*(1/S) tie flips:", flips)
    assert flips["boundary_ties"] == 0

    def half_away(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
        code = zero_point + roundf(x / F32(scale))
        inside = (code >= quant_min) & (code <= quant_max)
        return ((np.clip(code, quant_min, quant_max) - zero_point) * F32(scale)).astype(F32), \
            np.where(inside, grad_y, 0).astype(F32)

    report, _ = audit_flips("fake_quant", half_away, cases=["boundary_ties"])
    assert not report.passed


def test_exact_tie_case_has_no_tie_mask_at_float32():
    assert_exact_ties_unmasked("fake_quant", "boundary_ties")


def test_ties_mark_only_elements_whose_alternative_differs():
    assert_masks_mark_only_differing_alternatives("fake_quant")


# ----------------------------------------------------------------------------- cross-checks


@pytest.mark.crosscheck
def test_fake_quant_and_its_gradient_match_torch():
    torch = pytest.importorskip("torch", reason="torch fake_quantize_* is the cross-check")
    x = np.concatenate([RNG.normal(scale=4.0, size=200), [127.5, -128.5, 2.5, -2.5, 126.6, 300.0]])
    g = RNG.normal(size=x.size)
    for scale, zp, qmin, qmax in ((1.0, 0, -128, 127), (0.0625, 3, 0, 15), (0.03125, 0, -127, 127)):
        y, grad = ref.fake_quant(x, g, scale, zp, qmin, qmax)
        tx = torch.tensor(x, dtype=torch.float32, requires_grad=True)
        ty = torch.fake_quantize_per_tensor_affine(tx, scale, zp, qmin, qmax)
        ty.backward(torch.tensor(g, dtype=torch.float32))
        y32, grad32 = ref.fake_quant(x.astype(np.float32), g.astype(np.float32), scale, zp, qmin, qmax)
        assert np.array_equal(ty.detach().numpy(), y32)
        assert np.array_equal(tx.grad.numpy(), grad32)
        assert np.array_equal(grad32 != 0, grad != 0)
    # per channel: one (scale, zero_point) per row
    xs = RNG.normal(size=(3, 40))
    tx = torch.tensor(xs, dtype=torch.float32, requires_grad=True)
    scales, zps = [0.0625, 0.125, 0.03125], [0, 2, -1]
    ty = torch.fake_quantize_per_channel_affine(tx, torch.tensor(scales), torch.tensor(zps, dtype=torch.int32),
                                                0, -8, 7)
    ty.backward(torch.ones_like(ty))
    for r in range(3):
        y, grad = ref.fake_quant(xs[r].astype(np.float32), np.ones(40, np.float32), scales[r], zps[r], -8, 7)
        assert np.array_equal(ty[r].detach().numpy(), y)
        assert np.array_equal(tx.grad[r].numpy(), grad)


@pytest.mark.crosscheck
def test_torch_fake_quantize_per_tensor_passes_fake_quant_float32():
    torch = pytest.importorskip("torch", reason="torch fake-quant is the cross-check")

    def impl(x, grad_y, scale=0.1, zero_point=0, quant_min=-128, quant_max=127):
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        y = torch.fake_quantize_per_tensor_affine(tx, scale, zero_point, quant_min, quant_max)
        y.backward(torch.from_numpy(grad_y))
        return y.detach().numpy(), tx.grad.numpy()

    report, flips = audit_flips("fake_quant", impl)
    assert report.passed, failures(report)
    print("fake_quant torch fake_quantize_per_tensor_affine tie flips:", flips)
