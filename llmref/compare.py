"""Compare one output of an implementation with its expected value.

Order of checks, first failure wins: shape, dtype, NaN/Inf parity, then values (exact for
integers, strings and booleans; allclose + NMSE for floats). Cosine similarity is reported
alongside.
"""
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from llmref.validate import is_float_dtype


class Outcome(str, Enum):
    PASSED = "PASSED"
    SHAPE_MISMATCH = "SHAPE_MISMATCH"
    DTYPE_MISMATCH = "DTYPE_MISMATCH"
    NAN_INF_MISMATCH = "NAN_INF_MISMATCH"
    NUMERICAL_MISMATCH = "NUMERICAL_MISMATCH"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    UNSUPPORTED = "UNSUPPORTED"


@dataclass
class Comparison:
    output: str
    outcome: Outcome
    detail: str = ""
    metrics: dict = field(default_factory=dict)


def compare(name, actual, expected, declared: str, dtype: str, tol) -> Comparison:
    """`declared` is the spec dtype ('float', 'int64', 'str', ...); `dtype` the evaluation dtype."""
    if declared in ("str", "bytes"):
        return _compare_text(name, actual, expected, declared)
    try:
        actual = np.asarray(actual)
    except Exception as exc:  # an object that does not convert is a wrong type, not a crash
        return Comparison(name, Outcome.DTYPE_MISMATCH, f"cannot convert to an array: {exc}")
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return Comparison(name, Outcome.SHAPE_MISMATCH,
                          f"shape {actual.shape}, expected {expected.shape}")
    if declared == "bool" or expected.dtype == np.bool_:
        if actual.dtype != np.bool_:
            return Comparison(name, Outcome.DTYPE_MISMATCH, f"dtype {actual.dtype}, expected bool")
        return _exact(name, actual, expected)
    if declared not in ("float", "float64", "float32"):
        if actual.dtype.kind not in "iu":
            return Comparison(name, Outcome.DTYPE_MISMATCH,
                              f"dtype {actual.dtype}, expected an integer type")
        return _exact(name, actual, expected)
    want = dtype if declared == "float" else declared
    if str(actual.dtype) != want:
        return Comparison(name, Outcome.DTYPE_MISMATCH, f"dtype {actual.dtype}, expected {want}")
    return _compare_float(name, actual.astype(np.float64), expected.astype(np.float64), tol)


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


def _exact(name, actual, expected):
    diff = actual != expected
    if not diff.any():
        return Comparison(name, Outcome.PASSED)
    worst = tuple(int(i) for i in np.argwhere(diff)[0])
    return Comparison(name, Outcome.NUMERICAL_MISMATCH,
                      f"{int(diff.sum())}/{diff.size} values differ; first at {worst}: "
                      f"{actual[worst]} vs {expected[worst]}",
                      {"mismatched": int(diff.sum()), "worst_index": worst})


def _compare_float(name, a, e, tol):
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    inf_a, inf_e = np.isinf(a), np.isinf(e)
    parity = (nan_a != nan_e) | (inf_a != inf_e) | (inf_e & (np.sign(a) != np.sign(e)))
    if parity.any():
        where = tuple(int(i) for i in np.argwhere(parity)[0])
        return Comparison(name, Outcome.NAN_INF_MISMATCH,
                          f"{int(parity.sum())} NaN/Inf position(s) differ; first at {where}: "
                          f"{a[where]} vs {e[where]}", {"worst_index": where})
    finite = np.isfinite(e)
    a, e = np.where(finite, a, 0.0), np.where(finite, e, 0.0)
    scale = float(np.abs(e).max()) if e.size else 0.0
    atol = tol.atol_scale * scale
    err = np.abs(a - e)
    excess = err - (atol + tol.rtol * np.abs(e))
    energy = float(np.sum(e * e))
    nmse = float(np.sum(err * err)) / energy if energy > 0 else (0.0 if not err.any() else np.inf)
    norm = float(np.linalg.norm(a) * np.linalg.norm(e))
    cosine = float(np.sum(a * e)) / norm if norm > 0 else float(not err.any())
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), e.shape)) if e.size else ()
    rel = err / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    metrics = {
        "max_abs_err": float(err.max()) if e.size else 0.0,
        "max_rel_err": float(rel.max()) if e.size else 0.0,
        "nmse": nmse,
        "cosine": cosine,
        "worst_index": worst,
        "mismatched": int((excess > 0).sum()),
        "rtol": tol.rtol,
        "atol": atol,
        "nmse_max": tol.nmse,
    }
    failures = []
    if metrics["mismatched"]:
        failures.append(f"{metrics['mismatched']}/{e.size} elements outside atol={atol:.3g} + "
                        f"rtol={tol.rtol:.3g}*|e|; worst at {worst}: {a[worst]!r} vs {e[worst]!r}")
    if nmse > tol.nmse:
        failures.append(f"NMSE {nmse:.3g} > {tol.nmse:.3g}")
    if failures:
        return Comparison(name, Outcome.NUMERICAL_MISMATCH, "; ".join(failures), metrics)
    return Comparison(name, Outcome.PASSED, "", metrics)
