"""Everything a case is made of, computed in one place: inputs, the inputs as fed at each
dtype, the expected outputs, and the tie and bound information the comparison needs.

seed(component, case) = first 8 bytes of SHA-256("component/case"), little-endian; inputs
come from numpy.random.Generator(PCG64(seed)) in the order the spec declares them, so the
same spec always yields bit-identical inputs on every machine.

Input recipes in a case (`inputs: {x: {...}}`, validated by llmref.spec):
  {dist: normal, mean: 0, std: 1}          Gaussian (any recipe may add `shape: [...]`
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

At evaluation dtype d an implementation is fed the 'float' inputs rounded to d by
`llmref.dtypes.round_to` (round to nearest even, directly from float64), and the expected
outputs are the reference's float64 outputs on exactly those rounded values: an
implementation is judged on its own arithmetic, not on the rounding of its inputs.
"""
import copy
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from llmref.dtypes import is_float_dtype, round_to
from llmref.errors import InputError, SpecError
from llmref.spec import Case, Spec, resolve

GENERATOR_VERSION = 2  # bump when the way goldens are computed or laid out changes

_SPECIAL = {
    "neg_inf": -np.inf,
    "inf": np.inf,
    "nan": np.nan,
    "zero": 0.0,
    "neg_zero": -0.0,
    "denormal": float(np.finfo(np.float32).smallest_subnormal),
}


@dataclass
class CaseAt:
    """One case at one evaluation dtype: what the implementation is fed and what it must give."""
    inputs: dict     # name -> array / str / bytes, exactly as fed (float inputs in the dtype)
    expected: dict   # output name -> expected value (floats as float64)
    ties: dict = field(default_factory=dict)    # output -> (near_tie mask, alternative value)
    bounds: dict = field(default_factory=dict)  # output -> extra absolute error allowed per element
    error: str | None = None  # a case the spec rejects: the reference's message (no outputs)


def case_seed(component: str, case_id: str) -> int:
    digest = hashlib.sha256(f"{component}/{case_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def case_rng(component: str, case_id: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(case_seed(component, case_id)))


def case_digest(spec: Spec, case: Case) -> str:
    """SHA-256 of everything that decides a case's golden: the case definition (dims, params,
    input recipe, generator function), the declared tensors and dtypes, whether the spec has
    tie and bound functions, the spec version and the generator version. A golden made from
    anything else is stale. Module paths are left out, so moving code keeps the goldens; what
    a function computes is guarded by the spec version and `golden verify --deep`."""
    definition = {
        "component": spec.id, "spec_version": spec.version, "generator_version": GENERATOR_VERSION,
        "case": {"id": case.id, "tier": case.tier, "dims": case.dims, "inputs": case.inputs,
                 "params": case.params, **({"expect": case.expect} if case.expect != "outputs" else {}),
                 "generator": case.generator.partition(":")[2] if case.generator else None},
        "inputs": [[t.name, t.dtype, list(t.shape)] for t in spec.inputs],
        "outputs": [[t.name, t.dtype, list(t.shape)] for t in spec.outputs],
        "dtypes": list(spec.dtypes), "ties": spec.ties is not None,
        "bound": spec.tolerance.get("bound") is not None,
    }
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    else:  # integers (the spec schema admits no other dist)
        x = rng.integers(desc["low"], desc["high"], size=shape)
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


def inputs_at(spec: Spec, inputs: dict, dtype: str) -> dict:
    """The inputs as an implementation receives them at `dtype`: 'float' inputs rounded by
    llmref's own rounding, everything else unchanged."""
    return {t.name: round_to(inputs[t.name], dtype) if t.dtype == "float" else inputs[t.name]
            for t in spec.inputs}


def widen(inputs: dict) -> dict:
    """Float inputs back to float64 (exactly), so the reference runs in float64 on them."""
    return {k: v.astype(np.float64) if isinstance(v, np.ndarray) and is_float_dtype(v.dtype)
            else v for k, v in inputs.items()}


def call(fn, spec: Spec, inputs: dict, params: dict) -> dict:
    """Call an implementation with keyword arguments named as in the spec; return its outputs
    as {name: value} in spec order."""
    return call_with(fn, [t.name for t in spec.outputs], inputs, params)


def call_with(fn, output_names: list, inputs: dict, params: dict) -> dict:
    """fn(**inputs, **params) with the params deep-copied, so an implementation that mutates a
    list param cannot change the case for anyone after it. It may return one value, a tuple
    in output order (a one-element tuple where there is one output), or a dict by output
    name. Where there is one output, a list is that output's value."""
    result = fn(**inputs, **copy.deepcopy(params))
    names = list(output_names)
    if isinstance(result, dict):
        missing = [n for n in names if n not in result]
        if missing:
            raise TypeError(f"returned dict lacks output(s) {missing}")
        return {n: result[n] for n in names}
    if len(names) == 1 and not isinstance(result, tuple):
        return {names[0]: result}
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise TypeError(f"expected {len(names)} outputs {names} as a tuple or dict, "
                        f"got {type(result).__name__}")
    return dict(zip(names, result))


def compute_case(spec: Spec, case: Case, dtypes=None) -> dict:
    """{dtype: CaseAt} for `dtypes` (default: every dtype of the spec), from the reference."""
    inputs = make_inputs(spec, case)
    return {dtype: compute_at(spec, case, inputs, dtype) for dtype in dtypes or spec.dtypes}


def compute_at(spec: Spec, case: Case, inputs: dict, dtype: str) -> CaseAt:
    fed = inputs_at(spec, inputs, dtype)
    wide = widen(fed)
    if case.expect == "error":
        return CaseAt(fed, {}, error=reference_error(spec, case, wide))
    expected = call(resolve(spec.ref), spec, wide, case.params)
    expected = {t.name: _as_stored(expected[t.name]) for t in spec.outputs}
    ties = {}
    if spec.ties is not None and dtype != "float64":  # at float64 rounded outputs stay exact
        ties = resolve(spec.ties)(dtype, **wide, **copy.deepcopy(case.params))
    bounds = {}
    if spec.tolerance.get("bound") is not None:
        bounds = resolve(spec.tolerance["bound"])(dtype, **wide, **copy.deepcopy(case.params))
    return CaseAt(fed, expected, ties, bounds)


def reference_error(spec: Spec, case: Case, inputs: dict) -> str:
    """The reference's InputError message on a case the spec declares an error."""
    try:
        call(resolve(spec.ref), spec, inputs, case.params)
    except InputError as exc:
        return str(exc)
    raise SpecError(f"{spec.id}.yaml: cases[{case.id}].expect: the case expects an error, "
                    "but the reference returned outputs")


def _as_stored(value):
    if isinstance(value, (str, bytes)):
        return value
    arr = np.asarray(value)
    return arr.astype(np.float64) if is_float_dtype(arr.dtype) else arr
