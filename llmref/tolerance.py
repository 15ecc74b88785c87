"""Tolerances derived from the unit roundoff of the evaluation dtype.

For a case evaluated at dtype d, with unit roundoff u(d) (2^-53, 2^-24, 2^-11, 2^-8 for
float64, float32, float16, bfloat16) and accumulation dtype a(d) (float32 for float16 and
bfloat16 -- every spec's convention -- the dtype itself otherwise):

    rtol = ulps * max(u(d), sqrt(n) * u(a(d)))
                              ulps = the spec's count of roundings in the operation;
                              n = the spec's reduction length, if any. The sqrt(n) is the
                              probabilistic growth of rounding errors in a sum of n terms
                              (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
                              sec. 2.8 and 4.2), and it applies to the precision the sum is
                              carried in: inputs are exact (the golden is computed from the
                              rounded inputs), so at float16/bfloat16 the sum runs in float32
                              and the roundings that remain in d are those of the output and
                              of intermediates kept in d -- a few units of u(d), however long
                              the reduction.
    atol = rtol * max|expected|   a normwise floor, so entries near zero are judged against
                                  the output's scale rather than their own
    per element:  |a - e| <= atol + rtol * |e| + bound      bound: the spec's optional extra
                                  allowance for ill-conditioned inputs (a RoPE angle computed
                                  in float32 carries theta * u of absolute error), per element
    NMSE = sum (a - e)^2 / sum e^2  <=  (rtol + |bound| / |e|)^2
    cosine(a, e) >= 1 - that NMSE bound      (implied by the NMSE bound: 1 - cos <= NMSE/2 to
                                  first order; judged so that a report shows it)

The relative bound is capped: rtol must stay at or below RTOL_CAP = 1/8. With atol tied to
the output's scale, an all-zeros output passes the elementwise check only when rtol >= 1/2,
and a constant output passes the NMSE check only when the output's spread is below rtol of
its scale; 1/8 keeps both far away while leaving room for the largest honest derivation
(a few bfloat16 ulps). A derivation that exceeds the cap is a spec defect -- split the case
or derive a tighter model -- and is reported as a SpecError, never silently clamped.

Integers, strings and booleans compare exactly (tie-aware where they come from rounding).
A spec with `exact: true` (pure data movement: copies, gathers, scatters, and a single
correctly rounded product) compares its float outputs exactly too: each must equal the
expected value rounded once to the evaluation dtype, bit for bit.
"""
import math
from dataclasses import dataclass

from llmref.dtypes import UNIT_ROUNDOFF, accumulation_dtype
from llmref.errors import SpecError

RTOL_CAP = 1.0 / 8.0


@dataclass(frozen=True)
class Tolerance:
    rtol: float  # also the atol scale: atol = rtol * max|expected|
    reason: str
    exact: bool = False

    @property
    def nmse(self) -> float:
        """The NMSE bound before the per-element bound's share is added."""
        return self.rtol * self.rtol


def tolerance_for(spec, case, dtype: str) -> Tolerance:
    tol = spec.tolerance
    if tol.get("exact"):
        return Tolerance(rtol=0.0, reason=tol["reason"], exact=True)
    override = (tol.get("overrides") or {}).get(dtype, {})
    ulps = override.get("ulps", tol["ulps"])
    reason = override.get("reason", tol["reason"])
    n = reduction_length(tol.get("reduction"), case)
    u, ua = UNIT_ROUNDOFF[dtype], UNIT_ROUNDOFF[accumulation_dtype(dtype)]
    rtol = ulps * max(u, math.sqrt(n) * ua)
    if rtol > RTOL_CAP:
        raise SpecError(f"{spec.id}: case {case.id} at {dtype}: derived rtol {rtol:.3g} exceeds the "
                        f"cap {RTOL_CAP} (ulps {ulps}, reduction {n}): split the case or derive a "
                        "tighter model")
    return Tolerance(rtol=rtol, reason=reason)


def reduction_length(reduction, case) -> int:
    """The reduction length named in the spec: an int, a dim name, or a product 'A*B'
    (each name a dim or param of the case; the spec schema checks they exist)."""
    if reduction is None:
        return 1
    n = 1
    for name in str(reduction).split("*"):
        name = name.strip()
        n *= int(name) if name.isdigit() else int(case.dims.get(name, case.params.get(name)))
    return n
