"""Rounding in the quantization specs: llmref's own FP8 rounding, bit for bit against the format
definitions; correct float32 implementations that round near ties differently (x * (1/S),
fused multiply-adds, rounded threshold constants, torch's kernels) pass with the tie flips
counted; implementations of the other tie rule fail on the exact-tie cases; tie masks are
empty at exact ties and the one-alternative model is complete on every case."""
from fractions import Fraction

import numpy as np
import pytest

import llmref
from llmref.audit import judge
from llmref.cases import compute_at, make_inputs
from llmref.dtypes import round_to
from llmref.ref import quant, quant_extra, quant_formats
from llmref.ref.quant import integer_range, slice_layout
from llmref.ref.quant_formats import FP8_FORMATS, fp8_round, fp8_value
from llmref.spec import load_spec
from llmref.worker import Reply

F32 = np.float32


def audit_flips(component, fn, tier="full", cases=None):
    """The float32 audit of fn and the tie flips it needed, {case: flips}."""
    report = llmref.audit(component, fn, dtype="float32", tier=tier, cases=cases)
    flips = {r.case: sum(c.metrics.get("tie_flips", 0) for c in r.comparisons) for r in report.results}
    return report, flips


def failures(report):
    return [(r.case, r.detail[:160]) for r in report.failures()]


# ----------------------------------------------------------------------------- FP8 rounding

def _fp8_table(fmt):
    """{code: exact value} of every finite code, built from the OCP definition with Fractions
    (independent of fp8_value): sign, exponent field E, mantissa M of m bits, bias b;
    E = 0: M / 2^m * 2^(1-b); else (1 + M / 2^m) 2^(E - b); e4m3fn's S.1111.111 and e5m2's
    S.11111.xx are not finite."""
    f = FP8_FORMATS[fmt]
    m, table = f.mantissa_bits, {}
    for code in range(256):
        field, mant = (code & 0x7F) >> m, code & ((1 << m) - 1)
        if fmt == "e4m3" and code & 0x7F == 0x7F or fmt == "e5m2" and field == 31:
            continue
        scale = Fraction(2) ** ((1 if field == 0 else field) - f.bias)
        value = (Fraction(mant, 1 << m) + (0 if field == 0 else 1)) * scale
        table[code] = -value if code & 0x80 else value
    return table


@pytest.mark.parametrize("fmt,count,top,tiny", [("e4m3", 254, 448, 2.0 ** -9), ("e5m2", 248, 57344, 2.0 ** -16)])
def test_fp8_codes_decode_and_round_trip(fmt, count, top, tiny):
    table = _fp8_table(fmt)
    assert len(table) == count
    codes = np.array(sorted(table), dtype=np.uint8)
    values = np.array([-0.0 if c == 0x80 else float(table[c]) for c in codes])  # Fraction has no -0
    assert np.array_equal(fp8_value(codes, fmt), values)
    assert np.array_equal(np.signbit(fp8_value(codes, fmt)), codes >= 0x80)
    assert np.array_equal(fp8_round(values, fmt), codes)  # every value rounds to its own code
    assert max(values) == top and min(v for v in values if v > 0) == tiny
    if fmt == "e5m2":
        assert fp8_value(np.array([0x7C, 0xFC]), fmt).tolist() == [np.inf, -np.inf]
        assert np.isnan(fp8_value(np.array([0x7D, 0x7E, 0x7F, 0xFE]), fmt)).all()
    else:
        assert np.isnan(fp8_value(np.array([0x7F, 0xFF]), fmt)).all()


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_fp8_midpoints_tie_to_even_and_neighbours_round_to_nearest(fmt):
    """Between every pair of consecutive finite values (both signs, subnormals and the step
    across each binade included): the exact midpoint goes to the code with an even mantissa,
    the next float64 above to the upper code, the next below to the lower one."""
    table = _fp8_table(fmt)
    positive = sorted((v, c) for c, v in table.items() if v >= 0 and not c & 0x80)
    for (low, c_low), (high, c_high) in zip(positive, positive[1:]):
        mid = float((low + high) / 2)
        assert Fraction(mid) == (low + high) / 2  # exact in float64
        even = c_low if c_low % 2 == 0 else c_high
        assert fp8_round(np.array([mid]), fmt)[0] == even, (fmt, mid)
        assert fp8_round(np.array([np.nextafter(mid, np.inf)]), fmt)[0] == c_high
        assert fp8_round(np.array([np.nextafter(mid, -np.inf)]), fmt)[0] == c_low
        assert fp8_round(np.array([-mid]), fmt)[0] == even | 0x80


def test_fp8_overflow_specials_and_signed_zero():
    e4, e5 = "e4m3", "e5m2"
    # e4m3fn: no infinities; 464 (midpoint of 448 and the NaN pattern) rounds to even 448
    assert fp8_round(np.array([464.0, np.nextafter(464.0, np.inf), 1e30, np.inf, -np.inf, np.nan]), e4).tolist() == \
        [0x7E, 0x7F, 0x7F, 0x7F, 0xFF, 0x7F]
    # e5m2: IEEE overflow to inf at 61440 (the midpoint of 57344 and 2^16, even is inf)
    assert fp8_round(np.array([np.nextafter(61440.0, 0), 61440.0, np.inf, -np.inf, np.nan]), e5).tolist() == \
        [0x7B, 0x7C, 0x7C, 0xFC, 0x7E]
    for fmt in (e4, e5):
        assert fp8_round(np.array([0.0, -0.0, 1e-300, -5e-324]), fmt).tolist() == [0, 0x80, 0, 0x80]


@pytest.mark.crosscheck
@pytest.mark.parametrize("fmt,name", [("e4m3", "float8_e4m3fn"), ("e5m2", "float8_e5m2")])
def test_fp8_rounding_matches_ml_dtypes_and_torch_on_float32(fmt, name):
    """On float32 inputs (one rounding, whatever the release) ml_dtypes and torch agree with
    llmref's rounding bit for bit, ties and overflow included."""
    import ml_dtypes

    torch = pytest.importorskip("torch", reason="torch float8 casts are a cross-check")
    table = _fp8_table(fmt)
    finite = np.array(sorted(float(v) for v in table.values()))
    mids = (finite[1:] + finite[:-1]) / 2
    rng = np.random.default_rng(7)
    x = np.concatenate([finite, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
                        rng.normal(scale=30.0, size=4000), rng.normal(scale=1e-3, size=1000)])
    x = round_to(x, "float32")
    x = x[np.abs(x.astype(np.float64)) <= fp8_value(FP8_FORMATS[fmt].max_code, fmt)]
    ours = fp8_round(x.astype(np.float64), fmt)
    assert np.array_equal(ours, x.astype(getattr(ml_dtypes, name)).view(np.uint8))
    assert np.array_equal(ours, torch.from_numpy(x).to(getattr(torch, name)).view(torch.uint8).numpy())


# ----------------------------------------------------------------------------- quantize_linear

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
        return quant.quantize_linear(x, bits, scheme, signed, granularity, axis, group_size)
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
        zero = np.clip(qmin - quant_formats.roundf(slices.min(axis=1) / scale).astype(np.int64), qmin, qmax)
    q = np.clip(quant_formats.roundf(slices / scale[:, None]).astype(np.int64) + zero[:, None], qmin, qmax)
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
        ties = quant.quantize_linear_ties("float32", wide, **case.params)
        if case.id in QL_EXACT_TIES + ["affine8_odd_zero_ties"]:
            assert not any(np.asarray(mask).any() for mask, _ in ties.values()), case.id
        params = {"bits": 8, "scheme": "symmetric", "signed": True, **case.params}
        if params["scheme"] in ("symmetric", "affine"):
            slices, _, _ = slice_layout(wide, params.get("granularity", "tensor"), params.get("axis", 0),
                                        params.get("group_size", 0))
            near_e, _, near_z, _ = quant.linear_tie_decisions("float32", slices, params["bits"],
                                                              params["scheme"], params["signed"])
            assert not (near_e & near_z[:, None]).any(), case.id


@pytest.mark.parametrize("component,case_id", [
    ("fake_quant", "boundary_ties"), ("fp8_quantize", "e4m3_midpoints"), ("fp8_quantize", "e5m2_midpoints"),
    ("gguf_quantize", "q4_0_ties"), ("gguf_quantize", "q4_1_ties"), ("gguf_quantize", "q8_0_ties")])
def test_exact_tie_cases_have_no_tie_mask_at_float32(component, case_id):
    """Computed exactly (scale 1 or a power of two), the ties stay exact: only the rule passes."""
    spec = load_spec(component)
    case = spec.case(case_id)
    at = compute_at(spec, case, make_inputs(spec, case), "float32")
    assert at.ties and not any(np.asarray(mask).any() for mask, _ in at.ties.values())


def test_nf4_float32_midpoints_stay_exact_ties():
    """The six midpoints that are float32 values (2, 6, 7, 9, 11, 13) are unmasked at float32;
    the nine others round off their midpoint and are accepted either side."""
    spec = load_spec("nf4_quantize")
    case = spec.case("midpoint_ties")
    at = compute_at(spec, case, make_inputs(spec, case), "float32")
    masked = np.flatnonzero(at.ties["x_hat"][0]) - 1  # element 0 is the absmax 1.0
    assert sorted(masked) == [0, 1, 3, 4, 5, 8, 10, 12, 14]


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


# ----------------------------------------------------------------------------- fake_quant

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
        code = zero_point + quant_formats.roundf(x / F32(scale))
        inside = (code >= quant_min) & (code <= quant_max)
        return ((np.clip(code, quant_min, quant_max) - zero_point) * F32(scale)).astype(F32), \
            np.where(inside, grad_y, 0).astype(F32)

    report, _ = audit_flips("fake_quant", half_away, cases=["boundary_ties"])
    assert not report.passed


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


# ----------------------------------------------------------------------------- NF4, GGUF, FP8, log2

NF4_MIDPOINTS_F32 = round_to((quant_formats.NF4_CODEBOOK[1:] + quant_formats.NF4_CODEBOOK[:-1]) / 2, "float32")


def nf4_bitsandbytes_style(x, block_size=64):
    """bitsandbytes' kernels in NumPy float32: scaled = x * (1 / absmax), code = the number of
    float32 midpoint thresholds with scaled > threshold (dQuantizeNF4's decision tree)."""
    blocks = x.reshape(-1, block_size)
    absmax = np.abs(blocks).max(axis=1)
    scaled = blocks * (F32(1) / np.where(absmax == 0, F32(1), absmax))[:, None]
    codes = (scaled[..., None] > NF4_MIDPOINTS_F32).sum(axis=-1)
    book = quant_formats.NF4_CODEBOOK.astype(F32)
    return quant_formats.pack_nf4(codes), absmax, (book[codes] * absmax[:, None]).reshape(-1)


def test_nf4_bitsandbytes_style_float32_passes():
    report, flips = audit_flips("nf4_quantize", nf4_bitsandbytes_style)
    assert report.passed, failures(report)
    print("nf4 bitsandbytes-style tie flips:", flips)
    assert flips["midpoint_ties"] > 0  # 9 midpoints are no float32 value: the thresholds move


def gguf_fma(x, fmt="Q4_0"):
    """ggml built with fused multiply-adds (gguf-py's emulation): x * id + 8.5 rounded once."""
    blocks = round_to(x, "float32").reshape(-1, 32)
    d, m, _, offset, rounding = quant_formats.gguf_decisions(blocks, fmt)
    base = blocks if m is None else (blocks - m[:, None]).astype(F32)
    w = base.astype(np.float64) * quant_formats.reciprocal(d).astype(np.float64)[:, None]
    q = rounding(round_to(w if offset is None else w + float(offset), "float32"))
    packed = quant_formats.pack_gguf(fmt, d, m, q)
    return packed, quant_formats.dequantize_gguf(packed, fmt)


def test_gguf_fma_build_float32_passes():
    report, flips = audit_flips("gguf_quantize", gguf_fma)
    assert report.passed, failures(report)
    print("gguf FMA tie flips:", flips)


@pytest.mark.crosscheck
def test_gguf_py_passes_float32():
    gguf = pytest.importorskip("gguf", reason="gguf-py is the cross-check for GGUF blocks")
    from gguf.quants import dequantize, quantize

    def impl(x, fmt="Q4_0"):
        qtype = getattr(gguf.GGMLQuantizationType, fmt)
        blocks = quantize(x.astype(F32), qtype).reshape(-1, quant_formats.BLOCK_BYTES[fmt])
        return blocks, dequantize(blocks.reshape(-1), qtype).reshape(-1).astype(F32)

    report, flips = audit_flips("gguf_quantize", impl)
    assert report.passed, failures(report)
    print("gguf-py tie flips:", flips)


def fp8_reciprocal(x, fmt="e4m3"):
    """FP8 in float32 with x * (1/scale), then llmref's rounding of the float32 value."""
    fmax = F32(quant_formats.fp8_max(fmt))
    amax = np.abs(x).max()
    scale = amax / fmax if amax > 0 else F32(1)
    bits = fp8_round((x * (F32(1) / scale)).astype(np.float64), fmt)
    return np.array([scale], F32), bits, (fp8_value(bits, fmt).astype(F32) * scale).astype(F32)


def test_fp8_reciprocal_float32_passes():
    report, flips = audit_flips("fp8_quantize", fp8_reciprocal)
    assert report.passed, failures(report)
    print("fp8 x*(1/S) tie flips:", flips)


@pytest.mark.crosscheck
def test_torch_float8_casts_pass_fp8_float32():
    torch = pytest.importorskip("torch", reason="torch float8 casts are the cross-check")

    def impl(x, fmt="e4m3"):
        dt = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}[fmt]
        tx = torch.from_numpy(x)
        scale = tx.abs().max() / quant_formats.fp8_max(fmt)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        code = (tx / scale).to(dt)
        return scale.reshape(1).numpy(), code.view(torch.uint8).numpy(), (code.float() * scale).numpy()

    report, flips = audit_flips("fp8_quantize", impl)
    assert report.passed, failures(report)
    print("fp8 torch tie flips:", flips)


def log2_through_log2f(x, bits=4, granularity="tensor", axis=0):
    """round(log2(|x| * (1/s))) with float32 log2: the log-domain rounding computed directly."""
    slices, restore_codes, restore_scale = slice_layout(x, granularity, axis, 0)
    amax = np.abs(slices).max(axis=1)
    scale = np.where(amax == 0, F32(1), amax).astype(F32)
    levels = quant_extra.log2_levels(bits)
    r = np.minimum(np.abs(slices) * (F32(1) / scale)[:, None], F32(1))
    with np.errstate(divide="ignore"):
        e = np.rint(np.log2(np.where(r > 0, r, F32(1)))).astype(np.int64)
    keep = (r > 0) & (e >= 1 - levels)
    codes = restore_codes(np.where(keep, np.where(slices < 0, -1, 1) * (e + levels), 0)).astype(np.int8)
    scale = restore_scale(scale)
    return codes, scale, quant_extra.log2_dequantize(codes, scale, bits)


def test_log2_through_log2f_float32_passes():
    report, flips = audit_flips("log2_quantize", log2_through_log2f)
    assert report.passed, failures(report)
    print("log2 through log2f tie flips:", flips)


@pytest.mark.parametrize("component", ["quantize_linear", "fake_quant", "nf4_quantize", "fp8_quantize",
                                       "gguf_quantize", "log2_quantize"])
def test_ties_mark_only_elements_whose_alternative_differs(component):
    """Every masked element's alternative differs from the expected value, and on random cases
    the masks stay a small fraction (the model does not blanket whole outputs; the tie cases
    put every element next to a tie on purpose)."""
    spec = load_spec(component)
    for case in spec.cases:
        at = compute_at(spec, case, make_inputs(spec, case), "float32")
        random = case.generator is None and all("dist" in recipe for recipe in case.inputs.values())
        for name, (mask, alternative) in at.ties.items():
            mask = np.asarray(mask)
            expected = np.asarray(at.expected[name], np.float64)
            assert not (mask & (np.asarray(alternative, np.float64) == expected)).any(), (case.id, name)
            if random:
                assert mask.sum() <= max(2, 1e-3 * mask.size), (case.id, name, int(mask.sum()))
