"""fp8_quantize: llmref's own FP8 rounding bit for bit against the OCP format definitions
(every code, every midpoint, overflow, specials, signed zero), the tie model (x * (1/S) and
torch's casts pass), and cross-checks against ml_dtypes and torch."""
from fractions import Fraction

import numpy as np
import pytest

from _quant import (assert_exact_ties_unmasked, assert_masks_mark_only_differing_alternatives,
                    audit_flips, failures)
from llmref.dtypes import round_to
from llmref.ref import fp8_quantize as ref
from llmref.ref.fp8_quantize import FP8_FORMATS, fp8_round, fp8_value

RNG = np.random.default_rng(20261123)
F32 = np.float32

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


# ----------------------------------------------------------------------------- ties


def fp8_reciprocal(x, fmt="e4m3"):
    """FP8 in float32 with x * (1/scale), then llmref's rounding of the float32 value."""
    fmax = F32(ref.fp8_max(fmt))
    amax = np.abs(x).max()
    scale = amax / fmax if amax > 0 else F32(1)
    bits = fp8_round((x * (F32(1) / scale)).astype(np.float64), fmt)
    return np.array([scale], F32), bits, (fp8_value(bits, fmt).astype(F32) * scale).astype(F32)


def test_fp8_reciprocal_float32_passes():
    report, flips = audit_flips("fp8_quantize", fp8_reciprocal)
    assert report.passed, failures(report)
    print("fp8 x*(1/S) tie flips:", flips)


@pytest.mark.parametrize("case_id", ["e4m3_midpoints", "e5m2_midpoints"])
def test_exact_tie_cases_have_no_tie_mask_at_float32(case_id):
    assert_exact_ties_unmasked("fp8_quantize", case_id)


def test_ties_mark_only_elements_whose_alternative_differs():
    assert_masks_mark_only_differing_alternatives("fp8_quantize")


# ----------------------------------------------------------------------------- cross-checks


@pytest.mark.crosscheck
@pytest.mark.parametrize("fmt,torch_name", [("e4m3", "float8_e4m3fn"), ("e5m2", "float8_e5m2")])
def test_fp8_bits_match_torch(fmt, torch_name):
    torch = pytest.importorskip("torch", reason="torch float8 casts are the cross-check")
    x = np.concatenate([RNG.normal(scale=5.0, size=500), [0.0, -0.0, 1e-9]]).astype(np.float32)
    scale, bits, x_hat = ref.fp8_quantize(x, fmt)
    theirs = (torch.from_numpy(x) / float(scale[0])).to(getattr(torch, torch_name))
    assert np.array_equal(theirs.view(torch.uint8).numpy(), bits)


@pytest.mark.crosscheck
def test_torch_float8_casts_pass_fp8_float32():
    torch = pytest.importorskip("torch", reason="torch float8 casts are the cross-check")

    def impl(x, fmt="e4m3"):
        dt = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}[fmt]
        tx = torch.from_numpy(x)
        scale = tx.abs().max() / ref.fp8_max(fmt)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        code = (tx / scale).to(dt)
        return scale.reshape(1).numpy(), code.view(torch.uint8).numpy(), (code.float() * scale).numpy()

    report, flips = audit_flips("fp8_quantize", impl)
    assert report.passed, failures(report)
    print("fp8 torch tie flips:", flips)
