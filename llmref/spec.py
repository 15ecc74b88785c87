"""Load and validate component specs (`specs/<component>.yaml`).

A spec is plain data read with `yaml.safe_load` and checked against the schema below; a bad
spec fails with `SpecError("FILE: FIELD: REASON")`. See README.md for the format.
"""
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmref.errors import SpecError
from llmref.paths import specs_dir

FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
# 'float' follows the evaluation dtype; the rest are fixed. 'str' and 'bytes' are stored as
# UTF-8 / raw uint8 arrays in goldens and handed to implementations as Python str / bytes.
TENSOR_DTYPES = ("float", "float64", "float32", "int64", "int32", "int16", "int8", "uint8",
                 "bool", "str", "bytes")
BACKENDS = ("numba-cpu", "numba-cuda", "cupy")
TIERS = ("smoke", "full")
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
    inputs: dict  # input name -> generator description (see llmref.cases)
    params: dict
    generator: str | None  # 'module:function' building all inputs, instead of `inputs`
    note: str


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
    accel: dict  # backend -> {'impl': 'module:fn', 'dtypes': [...]}
    inputs: tuple
    params: dict  # name -> {'type':..., 'default':..., 'doc':...}
    outputs: tuple
    dtypes: tuple
    tolerance: dict
    cases: tuple
    wrong_variants: tuple
    path: Path

    def case(self, case_id: str) -> Case:
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(f"{self.id}: no case {case_id!r} (cases: {[c.id for c in self.cases]})")

    @property
    def float_inputs(self) -> bool:
        return any(t.dtype == "float" for t in self.inputs)


def resolve(target: str):
    """Import 'package.module:function' and return the function."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def spec_paths() -> list:
    return sorted(specs_dir().glob("*.yaml"))


def component_ids() -> list:
    return [p.stem for p in spec_paths()]


_CACHE = {}


def load_spec(component: str) -> Spec:
    """The validated spec of one component (cached per process)."""
    if component not in _CACHE:
        path = specs_dir() / f"{component}.yaml"
        if not path.exists():
            raise SpecError(f"{component}: no such component (known: {', '.join(component_ids())})")
        _CACHE[component] = parse_spec_file(path)
    return _CACHE[component]


def all_specs() -> list:
    return [load_spec(c) for c in component_ids()]


def parse_spec_file(path) -> Spec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path.name}: (yaml): {exc}") from None
    return parse_spec(data, path)


def parse_spec(data, path) -> Spec:
    f = _Fields(Path(path).name)
    f.need(isinstance(data, dict), "(top)", "must be a mapping")
    for key in data:
        f.need(key in _TOP_KEYS, key, f"unknown field (allowed: {', '.join(_TOP_KEYS)})")
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
    params = {}
    for i, p in enumerate(data.get("params") or []):
        where = f"params[{i}]"
        f.need(isinstance(p, dict) and isinstance(p.get("name"), str), where, "needs a name")
        f.need(p.get("type") in ("int", "float", "bool", "str", "list"), f"{where}.type",
               "must be int, float, bool, str or list")
        params[p["name"]] = {"type": p["type"], "default": p.get("default"), "doc": p.get("doc", "")}
    dtypes = tuple(data.get("dtypes") or ("float64",))
    for d in dtypes:
        f.need(d in FLOAT_DTYPES, "dtypes", f"{d!r} is not one of {FLOAT_DTYPES}")
    f.need(dtypes[0] == "float64", "dtypes", "must start with float64 (the golden precision)")
    tolerance = _tolerance(f, data.get("tolerance"), dtypes)
    ref = f.get(data, "ref", str)
    f.need(_TARGET.match(ref) is not None, "ref", "must be 'module:function'")
    accel = {}
    for backend, entry in (data.get("accel") or {}).items():
        f.need(backend in BACKENDS, f"accel.{backend}", f"unknown backend (known: {BACKENDS})")
        entry = {"impl": entry} if isinstance(entry, str) else dict(entry or {})
        f.need(_TARGET.match(str(entry.get("impl"))) is not None, f"accel.{backend}.impl",
               "must be 'module:function'")
        entry.setdefault("dtypes", list(dtypes))
        for d in entry["dtypes"]:
            f.need(d in dtypes, f"accel.{backend}.dtypes", f"{d!r} is not in the spec's dtypes")
        accel[backend] = entry
    cases = tuple(_case(f, i, c, inputs, params) for i, c in enumerate(f.get(data, "cases", list)))
    ids = [c.id for c in cases]
    f.need(len(set(ids)) == len(ids), "cases", "case ids must be unique")
    f.need(any(c.tier == "smoke" for c in cases), "cases", "at least one smoke case is required")
    variants = tuple(_variant(f, i, v, dtypes, ids) for i, v in enumerate(data.get("wrong_variants") or []))
    references = tuple(f.get(data, "references", list))
    f.need(len(references) > 0, "references", "cite at least one source")
    return Spec(id=sid, version=version, summary=f.get(data, "summary", str),
                definition=f.get(data, "definition", str),
                conventions=tuple(data.get("conventions") or ()), references=references,
                ref=ref, accel=accel, inputs=inputs, params=params, outputs=outputs,
                dtypes=dtypes, tolerance=tolerance, cases=cases, wrong_variants=variants,
                path=Path(path))


_TOP_KEYS = ("id", "version", "summary", "definition", "conventions", "references", "ref",
             "accel", "inputs", "params", "outputs", "dtypes", "tolerance", "cases",
             "wrong_variants")


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


def _tensor(f, where, t) -> Tensor:
    f.need(isinstance(t, dict), where, "must be a mapping")
    name = f.get(t, "name", str, f"{where}.")
    dtype = f.get(t, "dtype", str, f"{where}.")
    f.need(dtype in TENSOR_DTYPES, f"{where}.dtype", f"{dtype!r} is not one of {TENSOR_DTYPES}")
    shape = t.get("shape", [])
    f.need(isinstance(shape, list), f"{where}.shape", "must be a list of ints and dim names")
    allow = tuple(t.get("allow") or ())
    for a in allow:
        f.need(a in ("nan", "inf", "neg_inf"), f"{where}.allow", f"{a!r} is not nan, inf or neg_inf")
    return Tensor(name, dtype, tuple(shape), allow, t.get("doc", ""))


def _tolerance(f, tol, dtypes) -> dict:
    f.need(isinstance(tol, dict), "tolerance", "is required (ulps, reason)")
    f.need(isinstance(tol.get("ulps"), (int, float)) and tol["ulps"] > 0, "tolerance.ulps",
           "must be a positive number (error growth in units of roundoff)")
    f.need(isinstance(tol.get("reason"), str) and tol["reason"].strip(), "tolerance.reason",
           "state why this growth factor is right")
    for d, over in (tol.get("overrides") or {}).items():
        f.need(d in dtypes, f"tolerance.overrides.{d}", "not one of the spec's dtypes")
        f.need(isinstance(over, dict) and isinstance(over.get("reason"), str),
               f"tolerance.overrides.{d}", "needs a reason")
    return tol


def _case(f, i, c, inputs, params) -> Case:
    where = f"cases[{i}]"
    f.need(isinstance(c, dict), where, "must be a mapping")
    cid = f.get(c, "id", str, f"{where}.")
    f.need(_ID.match(cid) is not None, f"{where}.id", "must be lower_snake_case")
    where = f"cases[{cid}]"
    tier = c.get("tier", "smoke")
    f.need(tier in TIERS, f"{where}.tier", f"must be one of {TIERS}")
    generator = c.get("generator")
    case_inputs = c.get("inputs") or {}
    if generator is not None:
        f.need(_TARGET.match(str(generator)) is not None, f"{where}.generator", "must be 'module:function'")
    else:
        for t in inputs:
            f.need(t.name in case_inputs, f"{where}.inputs.{t.name}", "is required (or give a generator)")
    for name in case_inputs:
        f.need(name in [t.name for t in inputs], f"{where}.inputs.{name}", "is not a declared input")
    case_params = dict(c.get("params") or {})
    for name in case_params:
        f.need(name in params, f"{where}.params.{name}", "is not a declared param")
    full = {name: p["default"] for name, p in params.items()}
    full.update(case_params)
    for name, value in full.items():
        f.need(value is not None, f"{where}.params.{name}", "has no value and no default")
    return Case(cid, tier, dict(c.get("dims") or {}), case_inputs, full, generator, c.get("note", ""))


def _variant(f, i, v, dtypes, case_ids) -> WrongVariant:
    where = f"wrong_variants[{i}]"
    f.need(isinstance(v, dict), where, "must be a mapping")
    vid = f.get(v, "id", str, f"{where}.")
    impl = f.get(v, "impl", str, f"{where}.")
    f.need(_TARGET.match(impl) is not None, f"{where}.impl", "must be 'module:function'")
    dtype = v.get("dtype", "float64")
    f.need(dtype in dtypes, f"{where}.dtype", f"{dtype!r} is not in the spec's dtypes")
    catches = tuple(v.get("catches") or ())
    for cid in catches:
        f.need(cid in case_ids, f"{where}.catches", f"{cid!r} is not a case id")
    return WrongVariant(vid, impl, f.get(v, "description", str, f"{where}."), dtype, catches)
