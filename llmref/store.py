"""The golden store: golden/<component>/<case>.safetensors plus golden/MANIFEST.json.

This module only serializes, reads back and verifies; what a case holds is computed in
llmref.cases. One file per smoke case, its tensors named by `golden_key`:

  input.<name>               the case's inputs (float64; exact integers; text as UTF-8 uint8)
  input@<dtype>.<name>       each 'float' input rounded to <dtype> (float32, float16,
                             bfloat16), stored in that format: the exact bits an
                             implementation audited at <dtype> is fed
  output.<name>              the reference's outputs on the float64 inputs
  output@<dtype>.<name>      the reference's float64 outputs on the <dtype> inputs
  tie@<dtype>.<name>         where an output comes from rounding: the value on the other side
  tie_mask@<dtype>.<name>    of a tie, and which elements lie within <dtype>'s error of one
  bound@<dtype>.<name>       an extra absolute error allowed per element (input conditioning)

plus string metadata (component, case, versions, the case digest, seed, params as JSON).
Files are written canonically (llmref.tensorfile), so regenerating gives identical bytes.
MANIFEST.json records per case the file's SHA-256 and the digest of the case definition it
was made from (llmref.cases.case_digest); a tampered, missing, extra or stale file is
reported by name, and a stale golden is refused when loaded. Full-tier cases are not
stored: they are computed live by the reference.
"""
import fcntl
import functools
import hashlib
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from llmref.cases import (GENERATOR_VERSION, CaseAt, case_digest, case_seed, compute_at,
                          compute_case, make_inputs)
from llmref.errors import GoldenError
from llmref.paths import golden_dir, specs_dir
from llmref.spec import Spec, component_ids, load_spec
from llmref.tensorfile import TensorFileError, dumps, loads, read_bytes

FORMAT_VERSION = 2
MANIFEST = "MANIFEST.json"
ROUNDING = "IEEE 754 round-to-nearest-even, directly from float64 (llmref.dtypes.round_to)"
ROLES = ("input", "output", "tie", "tie_mask", "bound")
_NOT_GOLDEN = {"__init__.py", "__pycache__", MANIFEST}


def golden_key(role: str, name: str, dtype: str = "float64") -> str:
    """The one naming rule for tensors in a golden file."""
    assert role in ROLES, role
    return f"{role}.{name}" if dtype == "float64" else f"{role}@{dtype}.{name}"


def case_file(component: str, case_id: str) -> str:
    return f"{component}/{case_id}.safetensors"


def regenerate_hint(component: str) -> str:
    return f"run `llmref golden generate --component {component}`"


def is_shipped(spec: Spec) -> bool:
    return spec.path.parent.resolve() == specs_dir().resolve()


def smoke_cases(spec: Spec):
    return [c for c in spec.cases if c.tier == "smoke"]


# --- one case <-> one file ---------------------------------------------------------------

def encode_case(spec: Spec, case, data: dict) -> bytes:
    """Canonical safetensors bytes of one case computed at every dtype ({dtype: CaseAt})."""
    kinds = {t.name: t.dtype for t in spec.inputs + spec.outputs}
    tensors = {}
    for dtype, at in data.items():
        for name, value in at.inputs.items():
            if dtype == "float64" or kinds[name] == "float":
                tensors[golden_key("input", name, dtype)] = _encode(value)
        for name, value in at.expected.items():
            tensors[golden_key("output", name, dtype)] = _encode(value)
        for name, (mask, alternative) in at.ties.items():
            tensors[golden_key("tie_mask", name, dtype)] = np.asarray(mask, dtype=bool)
            tensors[golden_key("tie", name, dtype)] = _encode(alternative)
        for name, bound in at.bounds.items():
            tensors[golden_key("bound", name, dtype)] = _encode(np.asarray(bound, np.float64))
    metadata = {
        "component": spec.id, "case": case.id, "spec_version": str(spec.version),
        "generator_version": str(GENERATOR_VERSION), "format_version": str(FORMAT_VERSION),
        "definition": case_digest(spec, case), "seed": str(case_seed(spec.id, case.id)),
        "params": json.dumps(case.params, sort_keys=True), "rounding": ROUNDING,
        "expect": case.expect,
    }
    if case.expect == "error":
        metadata["error"] = data["float64"].error
    return dumps(tensors, metadata)


def _encode(value) -> np.ndarray:
    if isinstance(value, str):
        return np.frombuffer(value.encode("utf-8"), dtype=np.uint8).copy()
    if isinstance(value, bytes):
        return np.frombuffer(value, dtype=np.uint8).copy()
    return np.ascontiguousarray(value)


def decode_case(spec: Spec, tensors: dict, dtype: str, where: str, metadata=None) -> CaseAt:
    """The CaseAt for `dtype` from a golden file's tensors (and metadata, for error cases)."""
    def get(key):
        if key not in tensors:
            raise GoldenError(f"{where}: lacks tensor {key!r} ({regenerate_hint(spec.id)})")
        return tensors[key]

    inputs = {}
    for t in spec.inputs:
        key = golden_key("input", t.name, dtype if t.dtype == "float" else "float64")
        inputs[t.name] = _decode(t.dtype, get(key))
    if (metadata or {}).get("expect") == "error":
        return CaseAt(inputs, {}, error=metadata.get("error", ""))
    expected = {t.name: _decode(t.dtype, get(golden_key("output", t.name, dtype)))
                for t in spec.outputs}
    ties, bounds = {}, {}
    for t in spec.outputs:
        if golden_key("tie_mask", t.name, dtype) in tensors:
            ties[t.name] = (get(golden_key("tie_mask", t.name, dtype)),
                            get(golden_key("tie", t.name, dtype)))
        if golden_key("bound", t.name, dtype) in tensors:
            bounds[t.name] = get(golden_key("bound", t.name, dtype))
    return CaseAt(inputs, expected, ties, bounds)


def _decode(kind: str, arr: np.ndarray):
    if kind == "str":
        return bytes(arr).decode("utf-8")
    if kind == "bytes":
        return bytes(arr)
    return np.array(arr)  # a writable copy, so nothing downstream can touch the file's buffer


# --- manifest ----------------------------------------------------------------------------

def generate(components, root: Path | None = None) -> list:
    """Write the goldens of `components` under `root` (default: the shipped golden/) and
    update its manifest; returns the relative paths written."""
    root = Path(root) if root is not None else golden_dir()
    written, entries = [], {}
    for component in components:
        spec = load_spec(component)
        folder = root / component
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.safetensors"):
            old.unlink()
        cases = {}
        for case in smoke_cases(spec):
            rel = case_file(component, case.id)
            data = encode_case(spec, case, compute_case(spec, case))
            tmp = root / f"{rel}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, root / rel)
            cases[case.id] = {"file": rel, "sha256": hashlib.sha256(data).hexdigest(),
                              "definition": case_digest(spec, case)}
            written.append(rel)
        entries[component] = {"spec_version": spec.version, "cases": cases}
    with _locked_manifest(root) as manifest:
        manifest.update(format_version=FORMAT_VERSION, generator_version=GENERATOR_VERSION,
                        rounding=ROUNDING)
        components_entry = manifest.get("components")
        manifest["components"] = dict(sorted({**(components_entry if isinstance(components_entry, dict)
                                                 else {}), **entries}.items()))
    return written


@contextmanager
def _locked_manifest(root: Path):
    """Read-modify-write MANIFEST.json under an exclusive lock (several generators may run)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / MANIFEST, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        try:
            manifest = json.loads(text) if text.strip() else {}
        except ValueError:
            manifest = {}  # a damaged manifest is rewritten from what is generated now
        if not isinstance(manifest, dict):
            manifest = {}
        yield manifest
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


_HEX = re.compile(r"^[0-9a-f]{64}$")


def read_manifest(root: Path | None = None) -> dict:
    """The parsed manifest, its structure checked; any problem is a GoldenError naming it.
    The file is read on every call (a changed manifest is seen at once); its parse is shared
    by the calls that read the same text, so callers must not modify it."""
    root = Path(root) if root is not None else golden_dir()
    try:
        text = read_bytes(root / MANIFEST).decode("utf-8")
    except TensorFileError as exc:
        raise GoldenError(f"{exc} (run `llmref golden generate`)") from None
    except UnicodeDecodeError as exc:
        raise GoldenError(f"{MANIFEST}: not valid JSON ({exc})") from None
    return _parse_manifest(text)


@functools.lru_cache(maxsize=4)
def _parse_manifest(text: str) -> dict:
    """The manifest in `text`, checked (a check costs more than a case's own hash: it is done
    once per text, not once per case loaded)."""
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise GoldenError(f"{MANIFEST}: not valid JSON ({exc})") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise GoldenError(f"{MANIFEST}: {problem}")
    return manifest


def _manifest_problem(m) -> str:
    if not isinstance(m, dict):
        return "must be a JSON object"
    if m.get("format_version") != FORMAT_VERSION:
        return (f"format_version is {m.get('format_version')!r}, this llmref reads {FORMAT_VERSION} "
                "(run `llmref golden generate`)")
    if not isinstance(m.get("components"), dict):
        return "components: must be an object"
    for component, entry in m["components"].items():
        where = f"components.{component}"
        if not isinstance(entry, dict) or not isinstance(entry.get("cases"), dict):
            return f"{where}: must be an object with 'cases'"
        if not isinstance(entry.get("spec_version"), int) or isinstance(entry["spec_version"], bool):
            return f"{where}.spec_version: must be an integer"
        for case_id, c in entry["cases"].items():
            ok = (isinstance(c, dict) and c.get("file") == case_file(component, str(case_id))
                  and all(isinstance(c.get(k), str) and _HEX.match(c[k]) for k in ("sha256", "definition")))
            if not ok:
                return f"{where}.cases.{case_id}: must hold file, sha256 and definition"
    return ""


def load_case(spec: Spec, case, dtype: str = "float64", root: Path | None = None) -> CaseAt:
    """One case at one dtype. Smoke cases of shipped specs come from their golden file, after
    checking its hash and that it was made from this very case definition; full-tier cases,
    and every case of a spec that is not shipped, are computed live by the reference."""
    if case.tier == "full" or not is_shipped(spec):
        return compute_at(spec, case, make_inputs(spec, case), dtype)
    root = Path(root) if root is not None else golden_dir()
    rel = case_file(spec.id, case.id)
    entry = _case_entry(spec, case, read_manifest(root))
    try:
        data = read_bytes(root / rel)
    except TensorFileError as exc:
        raise GoldenError(f"{spec.id}/{exc} ({regenerate_hint(spec.id)})") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise GoldenError(f"{rel}: SHA-256 differs from MANIFEST.json (tampered or stale)")
    try:
        tensors, metadata = loads(data, rel)
    except TensorFileError as exc:
        raise GoldenError(str(exc)) from None
    return decode_case(spec, tensors, dtype, rel, metadata)


def _case_entry(spec: Spec, case, manifest: dict) -> dict:
    """The manifest entry of a case, refused when it was made from another definition."""
    component = manifest["components"].get(spec.id)
    hint = regenerate_hint(spec.id)
    if component is None:
        raise GoldenError(f"{spec.id}: no goldens in MANIFEST.json ({hint})")
    if component["spec_version"] != spec.version:
        raise GoldenError(f"{spec.id}: goldens are for spec version {component['spec_version']}, "
                          f"the spec is version {spec.version}: stale ({hint})")
    entry = component["cases"].get(case.id)
    if entry is None:
        raise GoldenError(f"{spec.id}/{case.id}: case has no golden in MANIFEST.json ({hint})")
    if entry["definition"] != case_digest(spec, case):
        raise GoldenError(f"{spec.id}/{case.id}: golden was made from a different case definition "
                          f"(dims, params, inputs or generator changed): stale ({hint})")
    return entry


def verify(components=None, root: Path | None = None, deep: bool = False) -> list:
    """Problems found, as (relative path, reason); empty when every golden is intact.

    components: the ones to check (default: all, which also reports folders and manifest
    entries that belong to no spec). deep: also recompute every golden from the reference and
    compare: the only check that catches a forged file whose hash was updated too."""
    root = Path(root) if root is not None else golden_dir()
    everything = components is None
    components = component_ids() if everything else list(components)
    try:
        manifest = read_manifest(root)
    except GoldenError as exc:
        return [(MANIFEST, str(exc))]
    listed = manifest["components"]
    problems = []
    for component in components:
        problems += _verify_component(load_spec(component), listed.get(component), root, deep)
    if everything:
        for extra in sorted(set(listed) - set(components)):
            problems.append((extra, "in MANIFEST.json but no spec has this id"))
        for path in sorted(root.iterdir()):
            if path.name not in _NOT_GOLDEN and path.name not in components:
                problems.append((path.name, "extra entry under golden/: no spec has this id"))
    return problems


def _verify_component(spec: Spec, entry, root: Path, deep: bool) -> list:
    if entry is None:
        return [(spec.id, f"not in MANIFEST.json ({regenerate_hint(spec.id)})")]
    problems = []
    if entry["spec_version"] != spec.version:
        problems.append((spec.id, f"goldens are for spec version {entry['spec_version']}, "
                                  f"spec is version {spec.version}: regenerate"))
    cases = {c.id: c for c in smoke_cases(spec)}
    for case_id in sorted(set(cases) - set(entry["cases"])):
        problems.append((case_file(spec.id, case_id), "case has no golden in MANIFEST.json"))
    for case_id, c in sorted(entry["cases"].items()):
        rel = c["file"]
        if case_id not in cases:
            problems.append((rel, "in MANIFEST.json but the spec has no such smoke case"))
            continue
        if c["definition"] != case_digest(spec, cases[case_id]):
            problems.append((rel, "stale: made from a different case definition (regenerate)"))
        try:
            data = read_bytes(root / rel)
        except TensorFileError as exc:
            problems.append((rel, str(exc).split(": ", 1)[-1]))
            continue
        if hashlib.sha256(data).hexdigest() != c["sha256"]:
            problems.append((rel, "SHA-256 differs from MANIFEST.json (tampered or stale)"))
        elif deep:
            problems += [(rel, p) for p in _deep_problems(spec, cases[case_id], data, rel)]
    folder = root / spec.id
    known = {Path(c["file"]).name for c in entry["cases"].values()}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name not in known:
            problems.append((f"{spec.id}/{path.name}", "extra file not in MANIFEST.json"))
    return problems


def _deep_problems(spec: Spec, case, data: bytes, rel: str) -> list:
    """Differences between a stored golden and the reference recomputed now."""
    from llmref.tolerance import tolerance_for

    fresh = encode_case(spec, case, compute_case(spec, case))
    if fresh == data:
        return []
    try:
        stored, _ = loads(data, rel)
    except TensorFileError as exc:
        return [str(exc)]
    new, _ = loads(fresh, rel)
    if stored.keys() != new.keys():
        return [f"holds tensors {sorted(set(stored) ^ set(new))} the reference does not make"]
    tol = tolerance_for(spec, case, "float64")
    problems = []
    for key in sorted(new):
        a, b = stored[key], new[key]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{key}: {a.dtype}{list(a.shape)}, the reference makes {b.dtype}{list(b.shape)}")
        elif key.startswith(("input", "tie_mask")) or b.dtype.kind != "f":
            if not np.array_equal(a, b):
                problems.append(f"{key}: differs from the reference recomputed now")
        elif not _close_float64(a, b, tol, new.get("bound." + key.split(".", 1)[1], 0.0)
                                if key.startswith("output.") else 0.0):
            problems.append(f"{key}: differs from the reference beyond its float64 tolerance")
    return problems


def _close_float64(a, b, tol, bound=0.0) -> bool:
    """Regenerated floats may differ by the spec's float64 tolerance and conditioning bound
    (vectorised libm and BLAS differ between CPUs by an ulp or so); NaN and inf positions
    must agree exactly."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    special = ~np.isfinite(a) | ~np.isfinite(b)
    if not np.array_equal(np.isnan(a), np.isnan(b)) or not np.array_equal(
            np.nan_to_num(a[special]), np.nan_to_num(b[special])):
        return False
    finite = np.isfinite(b)
    scale = float(np.abs(b[finite]).max()) if finite.any() else 0.0
    allowed = tol.rtol * (np.abs(b) + scale) + np.broadcast_to(bound, b.shape)
    return bool(np.all(np.abs(a - b)[finite] <= allowed[finite]))
