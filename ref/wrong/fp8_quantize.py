"""Wrong scaled-FP8 quantizers seen in the wild (specs/fp8_quantize.yaml); each must fail its
audit."""
import numpy as np

from llmref.dtypes import round_to
from llmref.ref import fp8_quantize as ref


def _fp8_scaled(x, fmt, fmax, rounding):
    """fp8_quantize with the FP8 max `fmax` and the rounding `rounding(v) -> bits` swapped."""
    x = np.asarray(x)
    amax = np.abs(x).max()
    scale = amax / x.dtype.type(fmax) if amax > 0 else x.dtype.type(1)
    bits = rounding((x / scale).astype(np.float64))
    x_hat = ref.fp8_value(bits, fmt).astype(x.dtype) * scale
    return np.array([scale], dtype=x.dtype), bits, x_hat.astype(x.dtype)


def fp8_unscaled(x, fmt="e4m3"):
    """x cast to FP8 with scale 1, saturating out-of-range values at +-F."""
    x = np.asarray(x)
    fmax = ref.fp8_max(fmt)
    bits = ref.fp8_round(np.clip(x.astype(np.float64), -fmax, fmax), fmt)
    return np.array([1.0], dtype=x.dtype), bits, ref.fp8_value(bits, fmt).astype(x.dtype)


def fp8_fnuz_max(x, fmt="e4m3"):
    """e4m3 scaled to 240 (e4m3fnuz's max) instead of 448."""
    fmax = 240.0 if fmt == "e4m3" else ref.fp8_max(fmt)
    return _fp8_scaled(x, fmt, fmax, lambda v: ref.fp8_round(v, fmt))


def fp8_round_half_away(x, fmt="e4m3"):
    """Midpoints between two FP8 values rounded away from zero."""
    def rounding(v):
        bits = ref.fp8_round(v, fmt)
        value = ref.fp8_value(bits, fmt)
        toward_zero = np.abs(value) < np.abs(v)  # v sits above |value|: the upper neighbour
        upper = ref.fp8_round(np.nextafter(v, np.copysign(np.inf, v)), fmt)
        mid = (ref.fp8_value(upper, fmt) + value) / 2
        return np.where(toward_zero & (v == mid), upper, bits).astype(np.uint8)
    return _fp8_scaled(x, fmt, ref.fp8_max(fmt), rounding)


def fp8_through_float32(x, fmt="e4m3"):
    """float64 -> float32 -> FP8: two roundings."""
    return _fp8_scaled(x, fmt, ref.fp8_max(fmt),
                       lambda v: ref.fp8_round(round_to(v, "float32").astype(np.float64), fmt))


def fp8_through_float16(x, fmt="e4m3"):
    """-> float16 -> FP8: two roundings (x.half().to(torch.float8_e4m3fn))."""
    return _fp8_scaled(x, fmt, ref.fp8_max(fmt),
                       lambda v: ref.fp8_round(round_to(v, "float16").astype(np.float64), fmt))
