"""Tolerances derived from the unit roundoff of the evaluation dtype.

For a case evaluated at dtype d with unit roundoff u(d) (half the gap between 1 and the
next float: 2^-53, 2^-24, 2^-11, 2^-8 for float64, float32, float16, bfloat16):

    g    = ulps * max(1, sqrt(n))      n = the spec's reduction length, if any; the sqrt is the
                                        probabilistic growth of rounding errors in a sum of n
                                        terms (Higham, Accuracy and Stability of Numerical
                                        Algorithms, 2nd ed., sec. 2.8 and 4.2)
    rtol = g * u(d)
    atol = rtol * max|expected|         a normwise floor, so entries near zero are judged
                                        against the output's scale rather than their own
    NMSE = sum (a - e)^2 / sum e^2  <=  rtol^2     (scale-free; the mean relative error
                                        may not exceed the per-element bound)

`ulps` comes from the spec (one number with its reason, optionally overridden per dtype with
its own reason). Integers, strings and booleans compare exactly.
"""
import math
from dataclasses import dataclass

UNIT_ROUNDOFF = {
    "float64": 2.0 ** -53,
    "float32": 2.0 ** -24,
    "float16": 2.0 ** -11,
    "bfloat16": 2.0 ** -8,
}


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol_scale: float  # atol = atol_scale * max|expected|
    nmse: float
    reason: str


def tolerance_for(spec, case, dtype: str) -> Tolerance:
    tol = spec.tolerance
    override = (tol.get("overrides") or {}).get(dtype, {})
    ulps = override.get("ulps", tol["ulps"])
    reason = override.get("reason", tol["reason"])
    n = reduction_length(tol.get("reduction"), case)
    rtol = ulps * max(1.0, math.sqrt(n)) * UNIT_ROUNDOFF[dtype]
    return Tolerance(rtol=rtol, atol_scale=rtol, nmse=rtol * rtol, reason=reason)


def reduction_length(reduction, case) -> int:
    """The reduction length named in the spec: an int, a dim name, or a product 'A*B'."""
    if reduction is None:
        return 1
    if isinstance(reduction, int):
        return reduction
    n = 1
    for name in str(reduction).split("*"):
        name = name.strip()
        n *= int(name) if name.isdigit() else int(case.dims.get(name, case.params.get(name, 1)))
    return n
