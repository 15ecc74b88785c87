"""llmref's own rounding, float64 -> float32/float16/bfloat16, bit for bit against the IEEE 754
rules: round to nearest, ties to even, directly from the float64 value."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmref.dtypes import FORMATS, UNIT_ROUNDOFF, round_to

NARROW = ("float32", "float16", "bfloat16")


def _value(bits: int, name: str) -> Fraction:
    """The exact value of a finite bit pattern of format `name`, decoded by the IEEE rules."""
    fmt = FORMATS[name]
    width = 1 + fmt.exponent_bits + fmt.fraction_bits
    sign = -1 if bits >> (width - 1) else 1
    exponent = (bits >> fmt.fraction_bits) & ((1 << fmt.exponent_bits) - 1)
    fraction = bits & ((1 << fmt.fraction_bits) - 1)
    if exponent == 0:  # subnormal
        return sign * Fraction(fraction, 1 << fmt.fraction_bits) * Fraction(2) ** fmt.emin
    return sign * (1 + Fraction(fraction, 1 << fmt.fraction_bits)) * Fraction(2) ** (exponent - fmt.bias)


def _largest(name) -> Fraction:
    fmt = FORMATS[name]
    return (2 - Fraction(1, 1 << fmt.fraction_bits)) * Fraction(2) ** fmt.emax


def _round_by_definition(x: float, name: str) -> float:
    """IEEE 754 round-to-nearest-even of x, over exact rationals: the two neighbours on the
    grid of x's binade (the subnormal grid below emin), the nearer one, the even one on a
    tie, and infinity when the result, with an unbounded exponent, exceeds the largest value."""
    fmt = FORMATS[name]
    v = abs(Fraction(x))
    if v == 0:
        return x
    e = v.numerator.bit_length() - v.denominator.bit_length()
    e -= Fraction(2) ** e > v  # now 2^e <= v < 2^(e+1)
    q = Fraction(2) ** (max(e, fmt.emin) - fmt.fraction_bits)
    low = v // q
    pick = low + 1 if (v - low * q > q / 2 or (v - low * q == q / 2 and low % 2 == 1)) else low
    result = pick * q
    magnitude = float("inf") if result > _largest(name) else float(result)
    return -magnitude if x < 0 else magnitude


@pytest.mark.parametrize("name", ("float32", "float16"))
def test_agrees_with_numpy_casts_on_random_bit_patterns(name):
    """NumPy's float64 -> float32/float16 casts are IEEE round-to-nearest-even from float64."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2 ** 64, size=200_000, dtype=np.uint64).view(np.float64)
    scaled = np.concatenate([x[np.isfinite(x)]] + [rng.standard_normal(20_000) * 2.0 ** e
                                                    for e in range(-160, 140, 7)])
    with np.errstate(over="ignore"):
        expected = scaled.astype(name)
    got = round_to(scaled, name)
    assert got.dtype == np.dtype(name)
    same = got.view(FORMATS[name].bits_dtype) == expected.view(FORMATS[name].bits_dtype)
    assert same.all(), scaled[~same][:5]


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(NARROW))
def test_matches_the_ieee_definition_over_exact_rationals(x, name):
    got = round_to(np.array([x]), name).astype(np.float64)[0]
    want = _round_by_definition(x, name)
    assert got == want and np.signbit(got) == np.signbit(want), (x, name, got, want)


@pytest.mark.parametrize("name", NARROW)
def test_matches_the_definition_on_a_sweep_of_bfloat16_midpoints(name):
    """Exhaustively over every bfloat16 bit pattern: the value, the midpoint to the next one
    and one float64 ulp either side of that midpoint."""
    bits = np.arange(0, 0x7F80, dtype=np.uint32)
    values = (bits << 16).view(np.float32).astype(np.float64)
    upper = ((bits + 1) << 16).view(np.float32).astype(np.float64)
    mid = (values + upper) / 2
    probe = np.concatenate([values, mid, np.nextafter(mid, 0), np.nextafter(mid, np.inf)])
    probe = np.concatenate([probe, -probe])[::37]  # every 37th keeps the exact checker quick
    got = round_to(probe, name).astype(np.float64)
    want = np.array([_round_by_definition(float(x), name) for x in probe])
    assert np.array_equal(got, want)


@pytest.mark.parametrize("name", NARROW)
def test_exact_ties_go_to_even(name):
    """Midpoints between neighbouring values, in normal and subnormal ranges, round to the one
    with an even last bit; a hair above a midpoint rounds up, a hair below rounds down."""
    fmt = FORMATS[name]
    for bits in (0x1, 0x2, 0x3, 1 << fmt.fraction_bits, (1 << fmt.fraction_bits) + 1,
                 (fmt.bias << fmt.fraction_bits) + 5, (fmt.bias << fmt.fraction_bits) + 6):
        low, high = _value(bits, name), _value(bits + 1, name)
        mid = (low + high) / 2
        assert Fraction(float(mid)) == mid  # representable in float64
        even = low if bits % 2 == 0 else high
        assert Fraction(round_to(np.array([float(mid)]), name).astype(np.float64)[0]) == even
        above = np.nextafter(float(mid), np.inf)
        below = np.nextafter(float(mid), -np.inf)
        assert Fraction(round_to(np.array([above]), name).astype(np.float64)[0]) == high
        assert Fraction(round_to(np.array([below]), name).astype(np.float64)[0]) == low


@pytest.mark.parametrize("name", NARROW)
def test_overflow_underflow_signed_zero_and_nan(name):
    fmt = FORMATS[name]
    big = float(_largest(name))
    half_ulp = 2.0 ** (fmt.emax - fmt.fraction_bits - 1)
    tiny = 2.0 ** (fmt.emin - fmt.fraction_bits)  # the smallest subnormal
    x = np.array([big, big + half_ulp, np.nextafter(big + half_ulp, 0), -(big + half_ulp), np.inf,
                  -np.inf, 0.0, -0.0, tiny / 2, np.nextafter(tiny / 2, 1), -tiny / 2, tiny * 1.5, 1e-300])
    got = round_to(x, name).astype(np.float64)
    assert got[0] == big
    assert got[1] == np.inf  # the midpoint above the largest value is a tie, and even is inf
    assert got[2] == big
    assert got[3] == -np.inf and got[4] == np.inf and got[5] == -np.inf
    assert got[6] == 0 and not np.signbit(got[6]) and got[7] == 0 and np.signbit(got[7])
    assert got[8] == 0 and not np.signbit(got[8])  # a tie between 0 and the smallest: even is 0
    assert got[9] == tiny
    assert got[10] == 0 and np.signbit(got[10])
    assert got[11] == 2 * tiny  # tie between 1 and 2 quanta: even is 2
    assert got[12] == 0
    nan = round_to(np.array([np.nan, -np.nan]), name)
    assert np.isnan(nan.astype(np.float64)).all()
    width = 8 * np.dtype(fmt.bits_dtype).itemsize
    assert (nan.view(fmt.bits_dtype)[1] >> (width - 1)) == 1  # the sign is kept


def test_rounds_directly_not_through_float32():
    """The value from the trust issue: float64 -> float32 -> bfloat16 rounds twice and lands
    one ulp away; the direct rounding is -0.96484375."""
    x = -0.96289063876
    assert round_to(np.array([x]), "bfloat16").astype(np.float64)[0] == -0.96484375
    twice = round_to(round_to(np.array([x]), "float32").astype(np.float64), "bfloat16")
    assert twice.astype(np.float64)[0] == -0.9609375


def test_unit_roundoffs():
    assert UNIT_ROUNDOFF == {"float64": 2.0 ** -53, "float32": 2.0 ** -24,
                             "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}
