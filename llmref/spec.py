"""Load and validate component specs (`specs/<component>.yaml`).

A spec is plain data read with `yaml.safe_load` (kept as JSON in the user's cache, keyed by
the text's SHA-256, so that a later process reads it in milliseconds) and checked field by
field against the schema below (types, ranges, and every name it refers to: dims, params,
cases, and the reference, tie and bound functions, imported at load). A bad spec fails with
`SpecError("FILE: FIELD: REASON")` when it is loaded, never later with a traceback.
Accelerated targets are not imported at load (that would compile kernels); their form is
checked here and a test resolves every one of them. See CONTRIBUTING.md for the format.
"""
import hashlib
import importlib
import inspect
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from llmref.dtypes import FLOAT_DTYPES, TENSOR_KINDS
from llmref.errors import SpecError
from llmref.paths import specs_dir

BACKENDS = ("numba-cpu", "numba-cuda", "cupy")
TIERS = ("smoke", "full")
PARAM_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "list": (list,)}
# The input recipes `llmref.cases` draws from, and the keys each one takes.
DISTS = {"normal": ("mean", "std"), "uniform": ("low", "high"), "integers": ("low", "high")}
SPECIALS = ("neg_inf", "inf", "nan", "zero", "neg_zero", "denormal")
_ID = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple  # ints and dim names
    allow: tuple  # special values the input may hold: nan, inf, neg_inf
    doc: str


@dataclass(frozen=True)
class Case:
    id: str
    tier: str
    dims: dict
    inputs: dict  # input name -> recipe (see llmref.cases)
    params: dict
    generator: str | None  # 'module:function' building all inputs, instead of `inputs`
    note: str
    expect: str = "outputs"  # or "error": the spec rejects these inputs, so must the implementation


@dataclass(frozen=True)
class WrongVariant:
    id: str
    impl: str
    description: str
    dtype: str
    catches: tuple  # case ids of which at least one must fail


@dataclass(frozen=True)
class Spec:
    id: str
    version: int
    summary: str
    definition: str
    conventions: tuple
    references: tuple
    ref: str
    ties: str | None  # 'module:function' marking outputs that lie near a rounding tie
    accel: dict  # backend -> {'impl': 'module:fn', 'dtypes': [...]}
    inputs: tuple
    params: dict  # name -> {type, default, doc, choices (allowed values), alternatives (values
                  #          a test substitutes to prove the param changes some output)}
    outputs: tuple
    dtypes: tuple
    tolerance: dict
    cases: tuple
    wrong_variants: tuple
    path: Path
    bench: dict | None = None  # the benchmark shape and what it moves (llmref.bench)
    fit: dict | None = None    # how a sampler with its own randomness is judged (llmref.fit)
    invariants: tuple = ()     # properties checked without a golden (llmref.invariants)

    def case(self, case_id: str) -> Case:
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(f"{self.id}: no case {case_id!r} (cases: {[c.id for c in self.cases]})")

    @property
    def float_inputs(self) -> bool:
        return any(t.dtype == "float" for t in self.inputs)


def resolve(target: str, where: str = "target"):
    """Import 'package.module:function' and return it; failure is a SpecError naming `where`."""
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception as exc:  # ImportError, AttributeError, or the module raising on import
        raise SpecError(f"{where}: cannot import {target!r} ({type(exc).__name__}: {exc})") from None


def spec_paths() -> list:
    return sorted(specs_dir().glob("*.yaml"))


def component_ids() -> list:
    return [p.stem for p in spec_paths()]


_CACHE = {}


def load_spec(component: str) -> Spec:
    """The validated spec of one shipped component (cached per process). Only the names of
    shipped specs are accepted: a path or any other string is an error, never a file read."""
    if component not in _CACHE:
        known = component_ids()
        if component not in known:
            raise SpecError(f"{component}: no such component (known: {', '.join(known)})")
        _CACHE[component] = parse_spec_file(specs_dir() / f"{component}.yaml")
    return _CACHE[component]


def all_specs(components=None) -> list:
    """Every shipped spec, or those of `components` only (in the shipped order): a check of one
    component need not parse and import the other 54."""
    return [load_spec(c) for c in component_ids() if components is None or c in components]


def parse_spec_file(path) -> Spec:
    path = Path(path)
    try:
        data = _read_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path.name}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path.name}: (yaml): {exc}") from None
    return parse_spec(data, path)


def _parsed_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmref" / "specs"


def _read_yaml(text: str):
    """yaml.safe_load(text), read back from the JSON copy of an earlier parse of the same text
    when there is one: PyYAML's Python parser takes 1.6 s for the 55 specs, the JSON 10 ms.
    Only a parse that JSON gives back equal is kept (no integer keys, no NaN); a cache that
    cannot be read or written is passed by."""
    cached = _parsed_cache_dir() / f"{hashlib.sha256(text.encode()).hexdigest()}.json"
    try:
        return json.loads(cached.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    data = yaml.safe_load(text)
    encoded = json.dumps(data)
    if json.loads(encoded) == data:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(encoded, encoding="utf-8")
            os.replace(partial, cached)  # whole or absent, for a reader in another process
        except OSError:
            pass
    return data


def parse_spec(data, path) -> Spec:
    try:
        return _parse_spec(data, path)
    except SpecError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        # a shape of data no field check anticipated: still one named error, never a traceback
        raise SpecError(f"{Path(path).name}: (structure): {type(exc).__name__}: {exc}") from None


def _parse_spec(data, path) -> Spec:
    f = _Fields(Path(path).name)
    f.need(isinstance(data, dict), "(top)", "must be a mapping")
    for key in data:
        f.need(key in _TOP_KEYS, str(key), f"unknown field (allowed: {', '.join(_TOP_KEYS)})")
    sid = f.get(data, "id", str)
    f.need(_ID.match(sid) is not None, "id", "must be lower_snake_case")
    f.need(sid == Path(path).stem, "id", f"must equal the file name stem {Path(path).stem!r}")
    version = f.get(data, "version", int)
    f.need(version >= 1, "version", "must be >= 1")
    inputs = tuple(_tensor(f, f"inputs[{i}]", t) for i, t in enumerate(f.get(data, "inputs", list)))
    outputs = tuple(_tensor(f, f"outputs[{i}]", t) for i, t in enumerate(f.get(data, "outputs", list)))
    f.need(len(outputs) > 0, "outputs", "at least one output is required")
    names = [t.name for t in inputs + outputs]
    f.need(len(set(names)) == len(names), "inputs/outputs", "names must be unique")
    params = _params(f, data.get("params"))
    dtypes = tuple(f.get(data, "dtypes", list) if "dtypes" in data else ("float64",))
    f.need(all(isinstance(d, str) for d in dtypes), "dtypes", "must be dtype names")
    for d in dtypes:
        f.need(d in FLOAT_DTYPES, "dtypes", f"{d!r} is not one of {FLOAT_DTYPES}")
    f.need(len(dtypes) > 0 and dtypes[0] == "float64", "dtypes",
           "must start with float64 (the golden precision)")
    f.need(len(set(dtypes)) == len(dtypes), "dtypes", "must not repeat")
    tolerance = _tolerance(f, data.get("tolerance"), dtypes)
    ref = _function(f, "ref", f.get(data, "ref", str))
    ties = _function(f, "ties", data["ties"]) if data.get("ties") is not None else None
    accel = _accel(f, data.get("accel"), dtypes)
    shape_dims = {d for t in inputs + outputs for d in t.shape if isinstance(d, str)}
    raw_cases = f.get(data, "cases", list)
    cases = tuple(_case(f, i, c, inputs, params, tolerance, shape_dims)
                  for i, c in enumerate(raw_cases))
    ids = [c.id for c in cases]
    f.need(len(set(ids)) == len(ids), "cases", "case ids must be unique")
    f.need(any(c.tier == "smoke" for c in cases), "cases", "at least one smoke case is required")
    f.need(isinstance(data.get("wrong_variants") or [], list), "wrong_variants", "must be a list")
    variants = tuple(_variant(f, i, v, dtypes, ids)
                     for i, v in enumerate(data.get("wrong_variants") or []))
    variant_ids = [v.id for v in variants]
    f.need(len(set(variant_ids)) == len(variant_ids), "wrong_variants", "ids must be unique")
    references = tuple(f.get(data, "references", list))
    f.need(len(references) > 0 and all(isinstance(r, str) for r in references), "references",
           "cite at least one source, each as a string")
    f.need(isinstance(data.get("conventions") or [], list), "conventions", "must be a list")
    conventions = tuple(data.get("conventions") or ())
    f.need(all(isinstance(c, str) for c in conventions), "conventions", "must be strings")
    return Spec(id=sid, version=version, summary=f.get(data, "summary", str),
                definition=f.get(data, "definition", str), conventions=conventions,
                references=references, ref=ref, ties=ties, accel=accel, inputs=inputs,
                params=params, outputs=outputs, dtypes=dtypes, tolerance=tolerance, cases=cases,
                wrong_variants=variants, path=Path(path),
                bench=_bench(f, data.get("bench"), inputs, params, tolerance, dtypes, shape_dims),
                fit=_fit(f, data.get("fit"), inputs, outputs),
                invariants=_invariants(f, data.get("invariants"), inputs, outputs))


_TOP_KEYS = ("id", "version", "summary", "definition", "conventions", "references", "ref",
             "ties", "accel", "inputs", "params", "outputs", "dtypes", "tolerance", "cases",
             "wrong_variants", "bench", "fit", "invariants")


class _Fields:
    """Tiny helper so every schema failure reads 'FILE: FIELD: REASON'."""

    def __init__(self, filename):
        self.filename = filename

    def need(self, ok, field, reason):
        if not ok:
            raise SpecError(f"{self.filename}: {field}: {reason}")

    def get(self, mapping, key, kind, where=""):
        field = f"{where}{key}"
        self.need(isinstance(mapping, dict) and key in mapping, field, "is required")
        value = mapping[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        self.need(ok, field, f"must be of type {kind.__name__}, got {type(value).__name__}")
        return value


def _function(f, field, target):
    f.need(isinstance(target, str) and _TARGET.match(target) is not None, field,
           "must be 'module:function'")
    resolve(target, f"{f.filename}: {field}")
    return target


def _positive_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _tensor(f, where, t) -> Tensor:
    f.need(isinstance(t, dict), where, "must be a mapping")
    for key in t:
        f.need(key in ("name", "dtype", "shape", "allow", "doc"), f"{where}.{key}", "unknown field")
    name = f.get(t, "name", str, f"{where}.")
    f.need(_ID.match(name) is not None or name.isidentifier(), f"{where}.name", "must be an identifier")
    dtype = f.get(t, "dtype", str, f"{where}.")
    f.need(dtype in TENSOR_KINDS, f"{where}.dtype", f"{dtype!r} is not one of {TENSOR_KINDS}")
    shape = t.get("shape", [])
    f.need(isinstance(shape, list) and all(
        (isinstance(d, int) and not isinstance(d, bool) and d >= 0) or isinstance(d, str)
        for d in shape), f"{where}.shape", "must be a list of sizes and dim names")
    f.need(isinstance(t.get("allow") or [], list), f"{where}.allow", "must be a list")
    allow = tuple(t.get("allow") or ())
    for a in allow:
        f.need(a in ("nan", "inf", "neg_inf"), f"{where}.allow", f"{a!r} is not nan, inf or neg_inf")
    return Tensor(name, dtype, tuple(shape), allow, str(t.get("doc", "")))


def _params(f, raw) -> dict:
    params = {}
    f.need(raw is None or isinstance(raw, list), "params", "must be a list")
    for i, p in enumerate(raw or []):
        where = f"params[{i}]"
        f.need(isinstance(p, dict) and isinstance(p.get("name"), str), where, "needs a name")
        for key in p:
            f.need(key in ("name", "type", "default", "doc", "choices", "alternatives"), f"{where}.{key}",
                   "unknown field")
        f.need(p.get("type") in tuple(PARAM_TYPES), f"{where}.type", f"must be one of {tuple(PARAM_TYPES)}")
        f.need(p["name"] not in params, f"{where}.name", "is declared twice")
        choices = p.get("choices")
        f.need(choices is None or (isinstance(choices, list) and choices), f"{where}.choices",
               "must be a non-empty list")
        alternatives = p.get("alternatives")
        f.need(alternatives is None or (isinstance(alternatives, list) and alternatives),
               f"{where}.alternatives", "must be a non-empty list of values")
        params[p["name"]] = {"type": p["type"], "default": p.get("default"),
                             "doc": str(p.get("doc", "")), "choices": choices,
                             "alternatives": alternatives}
        if p.get("default") is not None:
            _check_param(f, f"{where}.default", params[p["name"]], p["default"])
        for k, value in enumerate(alternatives or []):
            _check_param(f, f"{where}.alternatives[{k}]", params[p["name"]], value)
    return params


def _check_param(f, where, declared, value):
    kinds = PARAM_TYPES[declared["type"]]
    f.need(isinstance(value, kinds) and (declared["type"] == "bool" or not isinstance(value, bool)),
           where, f"must be of type {declared['type']}, got {type(value).__name__} {value!r}")
    if isinstance(value, float):
        f.need(math.isfinite(value), where, f"must be finite, got {value!r}")
    if declared["choices"] is not None:
        f.need(value in declared["choices"], where, f"{value!r} is not one of {declared['choices']}")


def _tolerance(f, tol, dtypes) -> dict:
    f.need(isinstance(tol, dict), "tolerance", "is required (ulps, reason)")
    for key in tol:
        f.need(key in ("ulps", "reduction", "reason", "overrides", "bound", "exact"), f"tolerance.{key}",
               "unknown field (allowed: ulps, reduction, reason, overrides, bound, exact)")
    f.need(isinstance(tol.get("exact", False), bool), "tolerance.exact", "must be true or false")
    if tol.get("exact"):
        for key in ("ulps", "reduction", "overrides", "bound"):
            f.need(key not in tol, f"tolerance.{key}", "an exact spec has no error model")
    else:
        f.need(_positive_number(tol.get("ulps")), "tolerance.ulps",
               "must be a positive finite number (error growth in units of roundoff)")
    f.need(isinstance(tol.get("reason"), str) and tol["reason"].strip(), "tolerance.reason",
           "state why this growth factor is right")
    reduction = tol.get("reduction")
    if reduction is not None:
        f.need(isinstance(reduction, (int, str)) and not isinstance(reduction, bool),
               "tolerance.reduction", "must be a size, a dim name, or a product 'A*B'")
        for part in str(reduction).split("*"):
            f.need(re.match(r"^\s*(\d+|[A-Za-z_]\w*)\s*$", part) is not None, "tolerance.reduction",
                   f"{part!r} is neither a size nor a name (each case must give it as a dim or param)")
    if tol.get("bound") is not None:
        _function(f, "tolerance.bound", tol["bound"])
    overrides = tol.get("overrides") or {}
    f.need(isinstance(overrides, dict), "tolerance.overrides", "must map dtypes to {ulps, reason}")
    for d, over in overrides.items():
        f.need(d in dtypes, f"tolerance.overrides.{d}", "not one of the spec's dtypes")
        f.need(isinstance(over, dict) and isinstance(over.get("reason"), str) and over["reason"].strip(),
               f"tolerance.overrides.{d}", "needs a reason")
        for key in over:
            f.need(key in ("ulps", "reason"), f"tolerance.overrides.{d}.{key}", "unknown field")
        f.need("ulps" not in over or _positive_number(over["ulps"]), f"tolerance.overrides.{d}.ulps",
               "must be a positive finite number")
    return tol


def _accel(f, raw, dtypes) -> dict:
    accel = {}
    f.need(raw is None or isinstance(raw, dict), "accel", "must map backends to 'module:function'")
    for backend, entry in (raw or {}).items():
        f.need(backend in BACKENDS, f"accel.{backend}", f"unknown backend (known: {BACKENDS})")
        entry = {"impl": entry} if isinstance(entry, str) else entry
        f.need(isinstance(entry, dict), f"accel.{backend}", "must be 'module:function' or {impl, dtypes}")
        entry = dict(entry)
        f.need(_TARGET.match(str(entry.get("impl"))) is not None, f"accel.{backend}.impl",
               "must be 'module:function'")
        entry.setdefault("dtypes", list(dtypes))
        f.need(isinstance(entry["dtypes"], list), f"accel.{backend}.dtypes", "must be a list")
        for d in entry["dtypes"]:
            f.need(d in dtypes, f"accel.{backend}.dtypes", f"{d!r} is not in the spec's dtypes")
        accel[backend] = entry
    return accel


def _case(f, i, c, inputs, params, tolerance, shape_dims) -> Case:
    where = f"cases[{i}]"
    f.need(isinstance(c, dict), where, "must be a mapping")
    for key in c:
        f.need(key in ("id", "tier", "dims", "inputs", "params", "generator", "note", "expect"),
               f"{where}.{key}", "unknown field")
    cid = f.get(c, "id", str, f"{where}.")
    f.need(_ID.match(cid) is not None, f"{where}.id", "must be lower_snake_case")
    where = f"cases[{cid}]"
    tier = c.get("tier", "smoke")
    f.need(tier in TIERS, f"{where}.tier", f"must be one of {TIERS}")
    dims = c.get("dims") or {}
    f.need(isinstance(dims, dict) and all(isinstance(k, str) for k in dims), f"{where}.dims",
           "must map dim names to values")
    for name, size in dims.items():
        f.need(isinstance(size, (int, str, list)) and not isinstance(size, bool),
               f"{where}.dims.{name}", "must be a size (or, for a generator, a name or list)")
    generator = c.get("generator")
    case_inputs = c.get("inputs") or {}
    f.need(isinstance(case_inputs, dict), f"{where}.inputs", "must map input names to recipes")
    declared = {t.name: t for t in inputs}
    for name in case_inputs:
        f.need(name in declared, f"{where}.inputs.{name}", "is not a declared input")
    used = set(shape_dims)  # a dim named in a declared shape documents that shape
    if generator is not None:
        f.need(not case_inputs, f"{where}.inputs", "a case gives either a generator or inputs")
        _function(f, f"{where}.generator", generator)
        _check_generator_dims(f, where, generator, dims)
        used |= set(dims)
    else:
        for t in inputs:
            f.need(t.name in case_inputs, f"{where}.inputs.{t.name}", "is required (or give a generator)")
            used |= _check_recipe(f, f"{where}.inputs.{t.name}", case_inputs[t.name], t, dims)
    f.need(isinstance(c.get("params") or {}, dict), f"{where}.params", "must map param names to values")
    case_params = dict(c.get("params") or {})
    for name, value in case_params.items():
        f.need(name in params, f"{where}.params.{name}", "is not a declared param")
        _check_param(f, f"{where}.params.{name}", params[name], value)
    full = {name: p["default"] for name, p in params.items()}
    full.update(case_params)
    for name, value in full.items():
        f.need(value is not None, f"{where}.params.{name}", "has no value and no default")
    reduction = tolerance.get("reduction")
    for part in str(reduction).split("*") if reduction is not None else ():
        part = part.strip()
        if not part.isdigit():
            f.need(isinstance(dims.get(part, full.get(part)), int), f"{where}.dims",
                   f"must give the reduction length {part!r} as an integer")
            used.add(part)
    for name in dims:
        f.need(name in used, f"{where}.dims.{name}", "is not a dim of any declared shape, the reduction or the generator")
    expect = c.get("expect", "outputs")
    f.need(expect in ("outputs", "error"), f"{where}.expect", "must be 'outputs' or 'error'")
    return Case(cid, tier, dict(dims), case_inputs, full, generator, str(c.get("note", "")), expect)


def _check_generator_dims(f, where, generator, dims):
    """The generator is called as fn(rng, **dims): its signature must take exactly those."""
    sig = inspect.signature(resolve(generator, f"{f.filename}: {where}.generator"))
    names = list(sig.parameters)[1:]
    required = [n for n in names if sig.parameters[n].default is inspect.Parameter.empty]
    for name in dims:
        f.need(name in names, f"{where}.dims.{name}", f"is not a parameter of {generator}")
    for name in required:
        f.need(name in dims, f"{where}.dims", f"must give {name!r}, required by {generator}")


def _check_recipe(f, where, desc, tensor, dims) -> set:
    """Validate one input recipe; return the dim names it draws its shape from."""
    f.need(isinstance(desc, dict), where, "must be a mapping")
    kinds = [k for k in ("dist", "values", "text") if k in desc]
    f.need(len(kinds) == 1, where, "needs exactly one of dist, values, text")
    if "dist" in desc:
        f.need(desc["dist"] in tuple(DISTS), f"{where}.dist", f"{desc['dist']!r} is not one of {tuple(DISTS)}")
    allowed = {"dist": ("dist", "shape", "special") + DISTS.get(desc.get("dist"), ()),
               "values": ("values", "shape"), "text": ("text",)}[kinds[0]]
    for key in desc:
        f.need(key in allowed, f"{where}.{key}", f"unknown field (allowed: {', '.join(allowed)})")
    if "text" in desc:
        f.need(isinstance(desc["text"], str), f"{where}.text", "must be a string")
        return set()
    shape = desc.get("shape")
    f.need(shape is None or (isinstance(shape, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)),
        f"{where}.shape", "must be a list of sizes")
    if "values" in desc:
        return _bind_values(f, where, desc["values"], tensor, dims) if shape is None else set()
    for key in DISTS[desc["dist"]]:
        f.need(key not in desc or (isinstance(desc[key], (int, float)) and not isinstance(desc[key], bool)
                                   and math.isfinite(desc[key])), f"{where}.{key}", "must be a finite number")
    if desc["dist"] == "integers":
        f.need("low" in desc and "high" in desc and desc["low"] < desc["high"], where,
               "integers needs low < high")
    special = desc.get("special") or {}
    f.need(isinstance(special, dict), f"{where}.special", "must map special values to amounts")
    for kind, amount in special.items():
        f.need(kind in SPECIALS, f"{where}.special.{kind}", f"is not one of {SPECIALS}")
        f.need(isinstance(amount, (int, float)) and not isinstance(amount, bool) and amount >= 0
               and (isinstance(amount, int) or amount < 1), f"{where}.special.{kind}",
               "must be a count (int) or a fraction in [0, 1)")
    if shape is not None:
        return set()
    names = {d for d in tensor.shape if isinstance(d, str)}
    for name in names:
        f.need(isinstance(dims.get(name), int), f"{where}",
               f"draws shape {list(tensor.shape)} but the case gives no integer dim {name!r}")
    return names


def _bind_values(f, where, values, tensor, dims) -> set:
    """Dims a literal input pins down: each one the case states must equal the literal's size."""
    try:
        sizes = np.shape(values)
    except ValueError:
        sizes = ()
    if len(sizes) != len(tensor.shape):
        return set()
    bound = set()
    for declared, size in zip(tensor.shape, sizes):
        if isinstance(declared, str) and declared in dims:
            f.need(dims[declared] == size, f"{where}.values",
                   f"has {declared} = {size}, but the case's dims say {dims[declared]}")
            bound.add(declared)
    return bound


def _bench(f, raw, inputs, params, tolerance, dtypes, shape_dims):
    """The `bench:` section: a case-like shape plus `shapes`, `bytes`, `flops`, `peers`, `dtypes`, `tiny`."""
    if raw is None:
        return None
    f.need(isinstance(raw, dict), "bench", "must be a mapping")
    allowed = ("dims", "shapes", "tiny", "inputs", "generator", "params", "bytes", "flops", "peers", "dtypes",
               "note")
    for key in raw:
        f.need(key in allowed, f"bench.{key}", f"unknown field (allowed: {', '.join(allowed)})")
    f.need(isinstance(raw.get("bytes"), str) and raw["bytes"].strip(), "bench.bytes",
           "state the bytes the operation must read and write, as arithmetic over the dims and e")
    f.need(raw.get("flops") is None or isinstance(raw["flops"], str), "bench.flops", "must be arithmetic text")
    peers = raw.get("peers") or {}
    f.need(isinstance(peers, dict) and all(isinstance(t, str) and _TARGET.match(t) for t in peers.values()),
           "bench.peers", "must map a library name to 'module:function'")
    f.need(isinstance(raw.get("dims"), dict), "bench.dims", "must map the dims to benchmark sizes")
    f.need(isinstance(raw.get("dtypes") or [], list), "bench.dtypes", "must be a list of dtypes")
    for d in raw.get("dtypes") or []:
        f.need(d in dtypes, "bench.dtypes", f"{d!r} is not in the spec's dtypes")
    tiny = raw.get("tiny") or {}
    f.need(isinstance(tiny, dict) and all(isinstance(v, int) for v in tiny.values()), "bench.tiny",
           "must map dims to small sizes")
    shapes = raw.get("shapes") or []
    f.need(isinstance(shapes, list) and all(isinstance(c, dict) and c and set(c) <= set(raw["dims"])
                                            and all(isinstance(v, int) for v in c.values()) for c in shapes),
           "bench.shapes", "must be a list of mappings, each changing some of bench.dims to other sizes")
    case = {k: raw[k] for k in ("dims", "inputs", "generator", "params") if k in raw}
    for dims in [d for c in [{}] + shapes for d in ({**raw["dims"], **c}, {**raw["dims"], **c, **tiny})]:
        _case(f, "bench", {"id": "bench", "tier": "full", **case, "dims": dims}, inputs, params,
              tolerance, shape_dims)
    return dict(raw)


def _fit(f, raw, inputs, outputs):
    """The `fit:` section: {distribution: output, drop: [inputs], samples: keyword}."""
    if raw is None:
        return None
    f.need(isinstance(raw, dict) and set(raw) == {"distribution", "drop", "samples"}, "fit",
           "must give distribution, drop and samples")
    f.need(raw["distribution"] in [t.name for t in outputs], "fit.distribution", "must name an output")
    f.need(isinstance(raw["drop"], list) and all(d in [t.name for t in inputs] for d in raw["drop"]),
           "fit.drop", "must list inputs (the supplied randomness)")
    f.need(isinstance(raw["samples"], str) and raw["samples"].isidentifier(), "fit.samples",
           "must be the keyword that carries the number of draws")
    return dict(raw)


def _invariants(f, raw, inputs, outputs) -> tuple:
    """`invariants:` entries: the built-in deterministic and batch_independent, or a check."""
    f.need(raw is None or isinstance(raw, list), "invariants", "must be a list")
    found = []
    for i, inv in enumerate(raw or []):
        where = f"invariants[{i}]"
        f.need(isinstance(inv, dict) and isinstance(inv.get("id"), str), where, "needs an id")
        for key in inv:
            f.need(key in ("id", "dim", "check", "description"), f"{where}.{key}", "unknown field")
        if inv["id"] == "batch_independent":
            dim = inv.get("dim")
            f.need(all(t.shape and t.shape[0] == dim for t in outputs), f"{where}.dim",
                   f"every output must lead with the batch dim {dim!r}")
            f.need(any(t.shape and t.shape[0] == dim for t in inputs), f"{where}.dim",
                   f"no input leads with {dim!r}")
        elif inv["id"] != "deterministic":
            _function(f, f"{where}.check", inv.get("check"))
            f.need(isinstance(inv.get("description"), str), f"{where}.description", "say what it checks")
        found.append(dict(inv))
    return tuple(found)


def _variant(f, i, v, dtypes, case_ids) -> WrongVariant:
    where = f"wrong_variants[{i}]"
    f.need(isinstance(v, dict), where, "must be a mapping")
    for key in v:
        f.need(key in ("id", "impl", "description", "dtype", "catches"), f"{where}.{key}", "unknown field")
    vid = f.get(v, "id", str, f"{where}.")
    impl = _function(f, f"{where}.impl", f.get(v, "impl", str, f"{where}."))
    dtype = v.get("dtype", "float64")
    f.need(dtype in dtypes, f"{where}.dtype", f"{dtype!r} is not in the spec's dtypes")
    f.need(isinstance(v.get("catches") or [], list), f"{where}.catches", "must be a list of case ids")
    catches = tuple(v.get("catches") or ())
    for cid in catches:
        f.need(cid in case_ids, f"{where}.catches", f"{cid!r} is not a case id")
    return WrongVariant(vid, impl, f.get(v, "description", str, f"{where}."), dtype, catches)
