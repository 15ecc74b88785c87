"""The one table of dtypes every layer uses, and the one rounding that makes golden bits.

Evaluation dtypes are the floating-point formats a case is judged in. Rounding a float64
value to one of them is defined here, once, as IEEE 754 round-to-nearest, ties-to-even,
applied directly to the float64 value (never through an intermediate format: float64 ->
float32 -> bfloat16 rounds twice and can land one ulp away). It is computed with exact
integer operations on the bit patterns, so the bits of every golden input and output are
the same whatever NumPy, ml_dtypes or CPU happens to be installed:

    x = (-1)^s * M * 2^(E - 52)              M the 53-bit significand of a finite float64
    q = max(E, emin) - (p - 1)               the target's quantum at x's binade (p = precision)
    N = round_half_even(M * 2^(E - 52 - q))  an exact integer shift and a remainder test
    result = (-1)^s * N * 2^q                N = 2^p carries into the next binade; a result
                                              above the largest finite value is +-inf; N < 2^(p-1)
                                              at the lowest quantum is a subnormal
NaN becomes the format's quiet NaN with the sign kept; +-inf and +-0 stay themselves.

Tensor kinds are the `dtype` values a spec may declare for an input or output.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FloatFormat:
    name: str
    short: str          # column label in tables
    exponent_bits: int
    fraction_bits: int  # stored significand bits; precision p = fraction_bits + 1
    safetensors: str    # dtype code in safetensors headers
    bits_dtype: str     # unsigned integer of the same width

    @property
    def precision(self) -> int:
        return self.fraction_bits + 1

    @property
    def unit_roundoff(self) -> float:
        """u = 2^-p: half the gap between 1 and the next representable number."""
        return 2.0 ** -self.precision

    @property
    def bias(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def emin(self) -> int:
        return 1 - self.bias

    @property
    def emax(self) -> int:
        return self.bias

    @property
    def numpy(self) -> np.dtype:
        if self.name == "bfloat16":
            import ml_dtypes  # only for the dtype object that holds the bits; never its casts

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(self.name)


FORMATS = {f.name: f for f in (
    FloatFormat("float64", "f64", 11, 52, "F64", "uint64"),
    FloatFormat("float32", "f32", 8, 23, "F32", "uint32"),
    FloatFormat("float16", "f16", 5, 10, "F16", "uint16"),
    FloatFormat("bfloat16", "bf16", 8, 7, "BF16", "uint16"),
)}
FLOAT_DTYPES = tuple(FORMATS)  # the golden precision first, then narrower and narrower
UNIT_ROUNDOFF = {name: f.unit_roundoff for name, f in FORMATS.items()}
SHORT = {name: f.short for name, f in FORMATS.items()}

INT_DTYPES = ("int64", "int32", "int16", "int8", "uint8")
# 'float' follows the evaluation dtype; every other kind is fixed. 'str' and 'bytes' travel
# as UTF-8 / raw uint8 arrays in golden files and reach implementations as Python str/bytes.
TENSOR_KINDS = ("float", "float64", "float32") + INT_DTYPES + ("bool", "str", "bytes")
TEXT_KINDS = ("str", "bytes")


def numpy_dtype(name: str) -> np.dtype:
    """'bfloat16' and the NumPy names -> np.dtype."""
    return FORMATS[name].numpy if name in FORMATS else np.dtype(name)


def is_float_dtype(dtype) -> bool:
    """True for NumPy's float types and bfloat16."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype == FORMATS["bfloat16"].numpy


def accumulation_dtype(name: str) -> str:
    """The precision sums are carried in at evaluation dtype `name`: every spec's convention
    is float32 accumulation for float16/bfloat16, the dtype itself otherwise."""
    return "float64" if name == "float64" else "float32"


def round_to(x, name: str) -> np.ndarray:
    """float64 values rounded to format `name` (round to nearest, ties to even, directly)."""
    fmt = FORMATS[name]
    x = np.asarray(x, dtype=np.float64)
    if name == "float64":
        return x.copy()
    return _round_bits(x, fmt).view(fmt.numpy)


def _round_bits(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """The bit patterns of x rounded to `fmt`, computed with integer operations only."""
    bits = x.view(np.uint64)
    sign = (bits >> np.uint64(63)).astype(np.uint64)
    biased = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    fraction = bits & np.uint64((1 << 52) - 1)
    p = fmt.precision

    # Finite nonzero: x = M * 2^(E - 52). float64 subnormals (E = -1022, no implicit bit) lie
    # far below every target's smallest subnormal and round to zero through the same shift.
    normal = biased > 0
    significand = np.where(normal, fraction | np.uint64(1 << 52), fraction)
    exponent = np.where(normal, biased - 1023, -1022)
    quantum = np.maximum(exponent, fmt.emin) - (p - 1)
    shift = np.minimum(52 + quantum - exponent, 55).astype(np.uint64)  # >= 53 - p + 1 > 0
    kept = significand >> shift
    remainder = significand & ((np.uint64(1) << shift) - np.uint64(1))
    half = np.uint64(1) << (shift - np.uint64(1))
    round_up = (remainder > half) | ((remainder == half) & ((kept & np.uint64(1)) == 1))
    n = kept + round_up.astype(np.uint64)

    # A carry out of the significand moves to the next binade.
    carry = n == np.uint64(1 << p)
    n = np.where(carry, np.uint64(1 << (p - 1)), n)
    quantum = quantum + carry
    subnormal = n < np.uint64(1 << (p - 1))
    exponent_field = np.where(subnormal, 0, quantum + (p - 1) + fmt.bias).astype(np.uint64)
    magnitude = (exponent_field << np.uint64(fmt.fraction_bits)) | (n & np.uint64((1 << fmt.fraction_bits) - 1))

    all_ones = np.uint64((1 << fmt.exponent_bits) - 1) << np.uint64(fmt.fraction_bits)
    overflow = quantum + (p - 1) > fmt.emax
    magnitude = np.where(overflow, all_ones, magnitude)                     # +-inf
    is_inf = (biased == 0x7FF) & (fraction == 0)
    is_nan = (biased == 0x7FF) & (fraction != 0)
    magnitude = np.where(is_inf, all_ones, magnitude)
    quiet_nan = all_ones | np.uint64(1 << (fmt.fraction_bits - 1))
    magnitude = np.where(is_nan, quiet_nan, magnitude)

    width = 8 * np.dtype(fmt.bits_dtype).itemsize
    out = (sign << np.uint64(width - 1)) | magnitude
    return out.astype(fmt.bits_dtype)
