"""quantize_linear: bad input, the round-trip bound, both numba backends through the
reference's checker, the tie model (correct float32 implementations that round near ties
differently pass with the flips counted, the other tie rule fails the exact-tie cases), and
cross-checks against torch."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import llmref
from _quant import assert_masks_mark_only_differing_alternatives, audit_flips, failures
from llmref import InputError
from llmref.accel.numba_cpu import quantize_linear as fast
from llmref.accel.numba_cuda import quantize_linear as cuda_quant
from llmref.audit import judge
from llmref.cases import compute_at, make_inputs
from llmref.dtypes import round_to
from llmref.ref import quantize_linear as ref
from llmref.ref._quant import roundf, slice_layout
from llmref.ref.quantize_linear import integer_range
from llmref.spec import load_spec
from llmref.worker import Reply

RNG = np.random.default_rng(20261123)
FINITE = st.floats(-1e3, 1e3, allow_nan=False, width=64)
F32 = np.float32

# ----------------------------------------------------------------------------- bad input


QUANTIZE_LINEAR = [ref.quantize_linear, fast.quantize_linear, cuda_quant.quantize_linear]


@pytest.mark.parametrize("impl", QUANTIZE_LINEAR)
@pytest.mark.parametrize("kwargs,name", [
    ({"granularity": "group", "axis": 1, "group_size": 5}, "group_size"),
    ({"granularity": "group", "axis": 1, "group_size": 0}, "group_size"),
    ({"bits": 9}, "bits"),
    ({"bits": 1}, "bits"),
    ({"scheme": "binary", "bits": 2}, "bits"),
    ({"scheme": "log"}, "scheme"),
    ({"granularity": "row"}, "granularity"),
    ({"granularity": "channel", "axis": 2}, "axis"),
    ({"signed": "yes"}, "signed"),
])
def test_quantize_linear_rejects_bad_arguments(impl, kwargs, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        impl(RNG.normal(size=(4, 8)), **kwargs)


@pytest.mark.parametrize("impl", QUANTIZE_LINEAR)
def test_quantize_linear_rejects_an_empty_tensor(impl):
    with pytest.raises(InputError, match="^x:"):
        impl(np.zeros((0, 8)))


def test_nan_input_is_rejected_naming_x():
    x = RNG.normal(size=(4, 8))
    x[1, 2] = np.nan
    for fn in (ref.quantize_linear, fast.quantize_linear):
        with pytest.raises(InputError, match="^x:"):
            fn(x)


def test_dequantize_rejects_scales_of_the_wrong_shape():
    q, s, z, _ = ref.quantize_linear(RNG.normal(size=(4, 8)), granularity="channel", axis=1)
    with pytest.raises(InputError, match="^scale:"):
        ref.dequantize_linear(q, s.T, z, "channel", 1)
    with pytest.raises(InputError, match="^zero_point:"):
        ref.dequantize_linear(q, s, z.T, "channel", 1)


def test_backends_validate_through_the_reference_checker():
    """Both numba backends call quantize_linear_args before any kernel; neither raises itself."""
    from pathlib import Path

    for module in (fast, cuda_quant):
        text = Path(module.__file__).read_text()
        assert "quantize_linear_args(" in text and "raise InputError" not in text, module.__name__


# ----------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.sampled_from([4, 8, 12])), elements=FINITE),
       st.integers(2, 8), st.sampled_from(["symmetric", "affine"]), st.booleans(),
       st.sampled_from([("tensor", 0, 0), ("channel", 0, 0), ("channel", 1, 0), ("group", 1, 4)]))
def test_round_trip_error_is_at_most_half_a_step_inside_the_range(x, bits, scheme, signed, layout):
    """|x - dequantize(quantize(x))| <= S/2 wherever x / S + Z lies inside [qmin, qmax]."""
    granularity, axis, group_size = layout
    q, s, z, x_hat = ref.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
    s_full = ref.expand_params(s, x.shape, granularity, axis, group_size)
    z_full = ref.expand_params(z, x.shape, granularity, axis, group_size)
    qmin, qmax = ref.integer_range(bits, scheme, signed)
    inside = (x / s_full + z_full >= qmin - 0.5) & (x / s_full + z_full <= qmax + 0.5)
    slack = 1e-12 * (1 + np.abs(x))
    assert np.all(np.abs(x - x_hat)[inside] <= (s_full / 2 + slack)[inside])
    assert q.min() >= qmin and q.max() <= qmax
    if scheme == "symmetric":  # the range covers every x: nothing clips
        assert inside.all()


# ----------------------------------------------------------------------------- ties


def _params32(slices, bits, scheme, signed, reciprocal):
    """float32 scale and zero-point as a float32 implementation computes them."""
    qmin, qmax = integer_range(bits, scheme, signed)
    if scheme == "symmetric":
        amax = np.abs(slices).max(axis=1)
        scale = np.where(amax == 0, F32(1), amax / F32(2 ** (bits - 1) - 1)).astype(F32)
        return scale, np.full(scale.shape, 0 if signed else 2 ** (bits - 1))
    lo, hi = slices.min(axis=1), slices.max(axis=1)
    scale = np.where(hi == lo, F32(1), (hi - lo) / F32(qmax - qmin)).astype(F32)
    t_zero = lo * (F32(1) / scale) if reciprocal else lo / scale
    return scale, np.clip(qmin - np.rint(t_zero).astype(np.int64), qmin, qmax)


def quantize_reciprocal(x, bits=8, scheme="symmetric", signed=True, granularity="tensor", axis=0,
                        group_size=0):
    """quantize_linear in float32 that multiplies by 1/S (as torch's kernels do)."""
    if scheme in ("binary", "ternary"):
        return ref.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
    qmin, qmax = integer_range(bits, scheme, signed)
    scale, zero = _params32(slices, bits, scheme, signed, reciprocal=True)
    inv = (F32(1) / scale).astype(F32)
    q = np.clip(np.rint(slices * inv[:, None]).astype(np.int64) + zero[:, None], qmin, qmax)
    x_hat = ((q - zero[:, None]).astype(F32) * scale[:, None]).astype(F32)
    return (restore_codes(q).astype(np.int32), restore_scale(scale), restore_scale(zero).astype(np.int32),
            restore_codes(x_hat))


def quantize_half_away(x, bits=8, scheme="symmetric", signed=True, granularity="tensor", axis=0,
                       group_size=0):
    """float32 x / S rounded half away from zero (C roundf), codes and zero-point."""
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
    qmin, qmax = integer_range(bits, scheme, signed)
    scale, zero = _params32(slices, bits, scheme, signed, reciprocal=False)
    if scheme == "affine":
        zero = np.clip(qmin - roundf(slices.min(axis=1) / scale).astype(np.int64), qmin, qmax)
    q = np.clip(roundf(slices / scale[:, None]).astype(np.int64) + zero[:, None], qmin, qmax)
    x_hat = ((q - zero[:, None]).astype(F32) * scale[:, None]).astype(F32)
    return (restore_codes(q).astype(np.int32), restore_scale(scale), restore_scale(zero).astype(np.int32),
            restore_codes(x_hat))


QL_EXACT_TIES = ["sym8_exact_ties", "affine8_exact_ties", "affine8_zero_point_tie", "affine4_signed_zero_tie"]


def test_quantize_linear_reciprocal_float32_passes_with_counted_tie_flips():
    report, flips = audit_flips("quantize_linear", quantize_reciprocal)
    assert report.passed, failures(report)
    print("quantize_linear x*(1/S) tie flips:", flips)
    assert flips["llm_weight_groups"] > 0  # the model was needed: see the next test
    assert all(flips[c] == 0 for c in QL_EXACT_TIES)


def test_exact_comparison_would_reject_the_reciprocal_implementation():
    """Without the tie masks the same correct implementation fails llm_weight_groups: the
    reason the spec is tie-aware."""
    spec = load_spec("quantize_linear")
    case = spec.case("llm_weight_groups")
    at = compute_at(spec, case, make_inputs(spec, case), "float32")
    outputs = dict(zip(["q", "scale", "zero_point", "x_hat"], quantize_reciprocal(**at.inputs, **case.params)))
    assert judge(spec, case, at, "float32", Reply("ok", outputs), "").outcome is llmref.Outcome.PASSED
    at.ties = {}
    assert judge(spec, case, at, "float32", Reply("ok", outputs), "").outcome is not llmref.Outcome.PASSED


def test_quantize_linear_half_away_fails_every_exact_tie_case_at_float32():
    report, _ = audit_flips("quantize_linear", quantize_half_away, cases=QL_EXACT_TIES)
    assert {r.case for r in report.failures()} == set(QL_EXACT_TIES)


def test_tie_masks_are_empty_on_exact_tie_cases_and_never_overlap():
    """Exact ties computed exactly (S = 1) are decided by the rule alone: no mask. And no
    element is near its own tie while its slice's zero-point is near one (the one alternative
    could not express both flips), on any case, full tier included."""
    spec = load_spec("quantize_linear")
    for case in spec.cases:
        wide = round_to(make_inputs(spec, case)["x"], "float32").astype(np.float64)
        ties = ref.quantize_linear_ties("float32", wide, **case.params)
        if case.id in QL_EXACT_TIES + ["affine8_odd_zero_ties"]:
            assert not any(np.asarray(mask).any() for mask, _ in ties.values()), case.id
        params = {"bits": 8, "scheme": "symmetric", "signed": True, **case.params}
        if params["scheme"] in ("symmetric", "affine"):
            slices, _, _ = slice_layout(wide, params.get("granularity", "tensor"), params.get("axis", 0),
                                        params.get("group_size", 0))
            near_e, _, near_z, _ = ref.linear_tie_decisions("float32", slices, params["bits"],
                                                              params["scheme"], params["signed"])
            assert not (near_e & near_z[:, None]).any(), case.id


def test_ties_mark_only_elements_whose_alternative_differs():
    assert_masks_mark_only_differing_alternatives("quantize_linear")


# ----------------------------------------------------------------------------- cross-checks


@pytest.mark.crosscheck
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
@pytest.mark.parametrize("scheme,signed", [("symmetric", True), ("affine", True),
                                           ("affine", False), ("symmetric", False)])
def test_quantize_matches_torch_per_tensor_and_per_channel(scheme, signed):
    torch = pytest.importorskip("torch", reason="torch quantize_per_* is the cross-check")
    x = RNG.normal(size=(6, 10)).astype(np.float32)  # torch quantizes float32 tensors
    dtype = torch.qint8 if signed else torch.quint8
    q, s, z, x_hat = ref.quantize_linear(x, 8, scheme, signed)
    tq = torch.quantize_per_tensor(torch.from_numpy(x), float(s.item()), int(z.item()), dtype)
    assert np.array_equal(tq.int_repr().numpy().astype(np.int32), q)
    assert np.allclose(tq.dequantize().numpy(), x_hat, rtol=0, atol=2 ** -23 * np.abs(x_hat).max())
    for axis in (0, 1):
        q, s, z, x_hat = ref.quantize_linear(x, 8, scheme, signed, "channel", axis)
        tq = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(s.reshape(-1)),
                                        torch.from_numpy(z.reshape(-1).astype(np.int64)), axis, dtype)
        assert np.array_equal(tq.int_repr().numpy().astype(np.int32), q)


@pytest.mark.crosscheck
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torch_fake_quant_per_channel_as_quantize_linear_passes_float32():
    """torch.fake_quantize_per_channel_affine (x * inv_scale, Z added after rounding) gives
    x_hat, the codes follow from it; scales and zero-points in float32 by the spec's formulas."""
    torch = pytest.importorskip("torch", reason="torch fake-quant is the cross-check")

    def impl(x, bits=8, scheme="symmetric", signed=True, granularity="tensor", axis=0, group_size=0):
        if scheme in ("binary", "ternary"):
            raise llmref.Unsupported("torch has no binary / ternary fake-quant")
        slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
        qmin, qmax = integer_range(bits, scheme, signed)
        scale, zero = _params32(slices, bits, scheme, signed, reciprocal=True)
        x_hat = torch.fake_quantize_per_channel_affine(
            torch.from_numpy(np.ascontiguousarray(slices)), torch.from_numpy(scale),
            torch.from_numpy(zero.astype(np.int32)), 0, qmin, qmax).numpy()
        q = np.rint(x_hat / scale[:, None]).astype(np.int64) + zero[:, None]  # (q - Z) S / S, exact
        return (restore_codes(q).astype(np.int32), restore_scale(scale),
                restore_scale(zero).astype(np.int32), restore_codes(x_hat))

    report, flips = audit_flips("quantize_linear", impl)
    assert report.passed, failures(report)
    print("quantize_linear torch fake_quantize_per_channel_affine tie flips:", flips)
    assert flips["llm_weight_groups"] > 0


@pytest.mark.crosscheck
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torch_quantize_per_channel_differs_only_at_odd_zero_point_ties():
    """torch.quantize_per_channel rounds x/S + Z (fbgemm): every case passes but
    affine8_odd_zero_ties, where adding an odd Z before rounding moves exact ties."""
    torch = pytest.importorskip("torch", reason="torch quantize_per_channel is the cross-check")

    def impl(x, bits=8, scheme="symmetric", signed=True, granularity="tensor", axis=0, group_size=0):
        if scheme in ("binary", "ternary"):
            raise llmref.Unsupported("no binary / ternary in torch")
        slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, group_size)
        qmin, qmax = integer_range(bits, scheme, signed)
        scale, zero = _params32(slices, bits, scheme, signed, reciprocal=True)
        qtype = torch.qint8 if qmin < 0 else torch.quint8
        tq = torch.quantize_per_channel(torch.from_numpy(np.ascontiguousarray(slices)),
                                        torch.from_numpy(scale.astype(np.float64)),
                                        torch.from_numpy(zero.astype(np.int64)), 0, qtype)
        q = np.clip(tq.int_repr().numpy().astype(np.int64), qmin, qmax)  # narrower ranges clamp again
        x_hat = ((q - zero[:, None]).astype(F32) * scale[:, None]).astype(F32)
        return (restore_codes(q).astype(np.int32), restore_scale(scale),
                restore_scale(zero).astype(np.int32), restore_codes(x_hat))

    report, flips = audit_flips("quantize_linear", impl)
    print("quantize_linear torch quantize_per_channel tie flips:", flips)
    assert [r.case for r in report.failures()] == ["affine8_odd_zero_ties"], failures(report)
