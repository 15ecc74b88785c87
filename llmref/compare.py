"""Compare one output of an implementation with its expected value.

Order of checks, first failure wins: shape, dtype, NaN/Inf parity, then values -- exact for
integers, strings and booleans; for floats the elementwise bound, NMSE and cosine of
llmref.tolerance. Outputs that come from rounding are compared tie-aware: where the case
marks an element as lying within the dtype's rounding error of a tie, the value on the
other side of that tie is accepted too, and the number of such elements is reported.
"""
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from llmref.dtypes import TEXT_KINDS, is_float_dtype, round_to


class Outcome(str, Enum):
    PASSED = "PASSED"
    SHAPE_MISMATCH = "SHAPE_MISMATCH"
    DTYPE_MISMATCH = "DTYPE_MISMATCH"
    NAN_INF_MISMATCH = "NAN_INF_MISMATCH"
    NUMERICAL_MISMATCH = "NUMERICAL_MISMATCH"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    ERROR_EXPECTED = "ERROR_EXPECTED"  # returned outputs where the spec rejects the inputs
    TIMEOUT = "TIMEOUT"
    CRASHED = "CRASHED"
    UNSUPPORTED = "UNSUPPORTED"


@dataclass
class Comparison:
    output: str
    outcome: Outcome
    detail: str = ""
    metrics: dict = field(default_factory=dict)
    # for a failure: {"actual", "expected", "ratio" (each element's error / its bound)}, the
    # arrays a report plots; kept out of JSON
    evidence: dict | None = field(default=None, repr=False, compare=False)


def compare(name, actual, expected, declared: str, dtype: str, tol, tie=None, bound=None) -> Comparison:
    """`declared` is the spec's kind ('float', 'int64', 'str', ...); `dtype` the evaluation
    dtype; `tie` an optional (near_tie mask, alternative) pair; `bound` an optional extra
    absolute allowance per element."""
    if declared in TEXT_KINDS:
        return _compare_text(name, actual, expected, declared)
    try:
        actual = np.asarray(actual)
    except Exception as exc:  # an object that does not convert is a wrong type, not a crash
        return Comparison(name, Outcome.DTYPE_MISMATCH, f"cannot convert to an array: {exc}")
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return Comparison(name, Outcome.SHAPE_MISMATCH,
                          f"shape {actual.shape}, expected {expected.shape}")
    if declared == "bool":
        if actual.dtype != np.bool_:
            return Comparison(name, Outcome.DTYPE_MISMATCH, f"dtype {actual.dtype}, expected bool")
        return _exact(name, actual, expected, tie)
    if declared not in ("float", "float64", "float32"):
        if actual.dtype.kind not in "iu":
            return Comparison(name, Outcome.DTYPE_MISMATCH,
                              f"dtype {actual.dtype}, expected an integer type")
        return _exact(name, actual.astype(np.int64), expected.astype(np.int64), tie)
    want = dtype if declared == "float" else declared
    if str(actual.dtype) != want or not is_float_dtype(actual.dtype):
        return Comparison(name, Outcome.DTYPE_MISMATCH, f"dtype {actual.dtype}, expected {want}")
    if tol.exact:  # bit for bit against the correctly rounded expected value
        rounded = round_to(expected.astype(np.float64), want).astype(np.float64)
        return _exact(name, actual.astype(np.float64), rounded, tie)
    return _compare_float(name, actual.astype(np.float64), expected.astype(np.float64), tol, tie, bound)


def _compare_text(name, actual, expected, declared):
    kind = str if declared == "str" else bytes
    if not isinstance(actual, kind):
        return Comparison(name, Outcome.DTYPE_MISMATCH,
                          f"type {type(actual).__name__}, expected {kind.__name__}")
    if actual == expected:
        return Comparison(name, Outcome.PASSED)
    at = next((i for i, (a, e) in enumerate(zip(actual, expected)) if a != e),
              min(len(actual), len(expected)))
    return Comparison(name, Outcome.NUMERICAL_MISMATCH,
                      f"differs at index {at}: {actual[at:at + 20]!r} vs {expected[at:at + 20]!r}",
                      {"first_difference": at})


def _exact(name, actual, expected, tie):
    nan = np.isnan(actual) & np.isnan(expected) if actual.dtype.kind == "f" else False
    actual = np.where(nan, 0, actual) if actual.dtype.kind == "f" else actual
    expected = np.where(nan, 0, expected) if expected.dtype.kind == "f" else expected
    flips = np.zeros(expected.shape, dtype=bool)
    if tie is not None:
        mask, alternative = (np.asarray(t) for t in tie)
        flips = mask & (actual != expected) & (actual == alternative.astype(actual.dtype))
    diff = (actual != expected) & ~flips
    metrics = {"mismatched": int(diff.sum()), "tie_flips": int(flips.sum())}
    if not diff.any():
        return Comparison(name, Outcome.PASSED, "", metrics)
    worst = tuple(int(i) for i in np.argwhere(diff)[0])
    metrics["worst_index"] = worst
    return Comparison(name, Outcome.NUMERICAL_MISMATCH,
                      f"{int(diff.sum())}/{diff.size} values differ; first at {worst}: "
                      f"{actual[worst]} vs {expected[worst]}", metrics,
                      {"actual": actual, "expected": expected, "ratio": diff.astype(np.float64)})


def _compare_float(name, a, e, tol, tie, bound):
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    inf_a, inf_e = np.isinf(a), np.isinf(e)
    parity = (nan_a != nan_e) | (inf_a != inf_e) | (inf_e & (np.sign(a) != np.sign(e)))
    if parity.any():
        where = tuple(int(i) for i in np.argwhere(parity)[0])
        return Comparison(name, Outcome.NAN_INF_MISMATCH,
                          f"{int(parity.sum())} NaN/Inf position(s) differ; first at {where}: "
                          f"{a[where]:.9g} vs {e[where]:.9g}", {"worst_index": where},
                          {"actual": a, "expected": e, "ratio": np.where(parity, np.inf, 0.0)})
    finite = np.isfinite(e)
    a, e = np.where(finite, a, 0.0), np.where(finite, e, 0.0)
    bound = np.zeros(e.shape) if bound is None else np.where(finite, np.broadcast_to(bound, e.shape), 0.0)
    scale = float(np.abs(e).max()) if e.size else 0.0
    atol = tol.rtol * scale
    allowed = atol + tol.rtol * np.abs(e) + bound
    flips = np.zeros(e.shape, dtype=bool)
    if tie is not None:
        mask, alternative = np.asarray(tie[0]), np.where(finite, np.asarray(tie[1], np.float64), 0.0)
        flips = mask & (np.abs(a - e) > allowed) & (np.abs(a - alternative) <= allowed)
        e = np.where(flips, alternative, e)
    err = np.abs(a - e)
    energy = float(np.sum(e * e))
    nmse = float(np.sum(err * err)) / energy if energy > 0 else (0.0 if not err.any() else np.inf)
    nmse_max = (tol.rtol + (float(np.linalg.norm(bound)) / energy ** 0.5 if energy > 0 else 0.0)) ** 2
    # 1 - cos(a, e) as half the squared distance of the unit vectors: exactly 0 for a == e,
    # and free of the cancellation that 1 - (a.e)/(|a||e|) suffers near 1.
    norm_a, norm_e = float(np.linalg.norm(a)), float(np.linalg.norm(e))
    if norm_a > 0 and norm_e > 0:
        one_minus_cos = 0.5 * float(np.sum((a / norm_a - e / norm_e) ** 2))
    else:
        one_minus_cos = 0.0 if not err.any() else 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.where(allowed > 0, err / allowed, np.where(err > 0, np.inf, 0.0))
        rel = np.where(e != 0, err / np.abs(e), np.where(err > 0, np.inf, 0.0))
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), e.shape)) if e.size else ()
    metrics = {
        "max_abs_err": float(err.max()) if e.size else 0.0,
        "max_rel_err": float(rel.max()) if e.size else 0.0,
        "nmse": nmse,
        "cosine": 1.0 - one_minus_cos,
        "worst_index": worst,
        "headroom": float(ratio.max()) if e.size else 0.0,  # worst error / its bound; > 1 fails
        "mismatched": int((ratio > 1).sum()),
        "tie_flips": int(flips.sum()),
        "rtol": tol.rtol,
        "atol": atol,
        "nmse_max": nmse_max,
        "cosine_min": 1.0 - nmse_max,
    }
    failures = []
    if metrics["mismatched"]:
        failures.append(f"{metrics['mismatched']}/{e.size} elements outside atol={atol:.3g} + "
                        f"rtol={tol.rtol:.3g}*|e|" + (" + bound" if bound.any() else "")
                        + f"; worst at {worst}: {a[worst]:.9g} vs {e[worst]:.9g}")
    if nmse > nmse_max:
        failures.append(f"NMSE {nmse:.3g} > {nmse_max:.3g}")
    if one_minus_cos > nmse_max:
        failures.append(f"cosine {1 - one_minus_cos:.9f} < {metrics['cosine_min']:.9f}")
    if failures:
        return Comparison(name, Outcome.NUMERICAL_MISMATCH, "; ".join(failures), metrics,
                          {"actual": a, "expected": e, "ratio": ratio})
    return Comparison(name, Outcome.PASSED, "", metrics)
