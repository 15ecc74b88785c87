"""Turn a spec's case (pure data) into concrete inputs, deterministically.

seed(component, case) = first 8 bytes of SHA-256("component/case"), little-endian; inputs
come from numpy.random.Generator(PCG64(seed)) in the order the spec declares them, so the
same spec always yields bit-identical inputs on every machine.

Input descriptions in a case (`inputs: {x: {...}}`):
  {dist: normal, mean: 0, std: 1}          Gaussian (any description may add `shape: [...]`
                                           to override the declared shape for this case)
  {dist: uniform, low: 0, high: 1}         uniform on [low, high)
  {dist: integers, low: 0, high: 10}       integers in [low, high)
  {values: [[1, 2], [3, 4]]}               literal values
  {text: "héllo"}                          literal text (str inputs)
  special: {neg_inf: 0.1, zero: 2, ...}    overwrite a fraction (float < 1) or a count (int)
                                           of positions with -inf, inf, nan, zero, neg_zero,
                                           denormal (the smallest float32 subnormal)
A case may instead name `generator: module:function`, called as fn(rng, **dims) and
returning a dict of all inputs; used where inputs must satisfy structure (block tables...).
"""
import hashlib

import numpy as np

from llmref.spec import Case, Spec, resolve
from llmref.validate import is_float_dtype

_SPECIAL = {
    "neg_inf": -np.inf,
    "inf": np.inf,
    "nan": np.nan,
    "zero": 0.0,
    "neg_zero": -0.0,
    "denormal": float(np.finfo(np.float32).smallest_subnormal),
}


def case_seed(component: str, case_id: str) -> int:
    digest = hashlib.sha256(f"{component}/{case_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def case_rng(component: str, case_id: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(case_seed(component, case_id)))


def make_inputs(spec: Spec, case: Case) -> dict:
    """The float64 / exact inputs of one case, as stored in its golden file."""
    rng = case_rng(spec.id, case.id)
    if case.generator is not None:
        made = resolve(case.generator)(rng, **case.dims)
        return {t.name: _as_declared(t.dtype, made[t.name]) for t in spec.inputs}
    out = {}
    for t in spec.inputs:
        desc = case.inputs[t.name]
        shape = desc.get("shape") or tuple(s if isinstance(s, int) else case.dims[s] for s in t.shape)
        out[t.name] = _as_declared(t.dtype, _draw(rng, desc, tuple(shape)))
    return out


def _draw(rng, desc, shape):
    if "values" in desc:
        return np.array(desc["values"])
    if "text" in desc:
        return desc["text"]
    dist = desc["dist"]
    if dist == "normal":
        x = rng.normal(desc.get("mean", 0.0), desc.get("std", 1.0), size=shape)
    elif dist == "uniform":
        x = rng.uniform(desc.get("low", 0.0), desc.get("high", 1.0), size=shape)
    elif dist == "integers":
        x = rng.integers(desc["low"], desc["high"], size=shape)
    else:
        raise ValueError(f"unknown dist {dist!r}")
    for kind, amount in (desc.get("special") or {}).items():
        count = amount if isinstance(amount, int) else int(round(amount * x.size))
        where = rng.choice(x.size, size=min(count, x.size), replace=False)
        x.reshape(-1)[where] = _SPECIAL[kind]
    return x


def _as_declared(dtype: str, value):
    if dtype == "str":
        return value if isinstance(value, str) else bytes(np.asarray(value, np.uint8)).decode("utf-8")
    if dtype == "bytes":
        return value if isinstance(value, bytes) else bytes(np.asarray(value, np.uint8))
    if dtype == "float":
        return np.asarray(value, dtype=np.float64)
    return np.asarray(value).astype(dtype, casting="unsafe")


def numpy_dtype(name: str) -> np.dtype:
    """'bfloat16' and the NumPy names -> np.dtype."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def cast_inputs(spec: Spec, inputs: dict, dtype: str) -> dict:
    """Inputs as an implementation receives them at `dtype`: 'float' inputs cast (round to
    nearest even), everything else unchanged."""
    out = {}
    for t in spec.inputs:
        value = inputs[t.name]
        out[t.name] = value.astype(numpy_dtype(dtype)) if t.dtype == "float" else value
    return out


def widen(inputs: dict) -> dict:
    """Float inputs back to float64 (exactly), so the reference runs in float64 on them."""
    return {k: v.astype(np.float64) if isinstance(v, np.ndarray) and is_float_dtype(v.dtype)
            else v for k, v in inputs.items()}


def call(fn, spec: Spec, inputs: dict, params: dict) -> dict:
    """Call an implementation with keyword arguments named as in the spec; return its outputs
    as {name: array-or-str} in spec order (it may return one value, a tuple or a dict)."""
    result = fn(**inputs, **params)
    names = [t.name for t in spec.outputs]
    if isinstance(result, dict):
        missing = [n for n in names if n not in result]
        if missing:
            raise TypeError(f"returned dict lacks output(s) {missing}")
        return {n: result[n] for n in names}
    if len(names) == 1:
        return {names[0]: result}
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise TypeError(f"expected {len(names)} outputs {names} as a tuple or dict")
    return dict(zip(names, result))


def reference_outputs(spec: Spec, inputs: dict, params: dict) -> dict:
    """Run the reference on float64 inputs."""
    return call(resolve(spec.ref), spec, widen(inputs), params)
