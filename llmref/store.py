"""The golden store: golden/<component>/<case>.safetensors plus golden/MANIFEST.json.

Each file holds, for one smoke case:
  input.<name>              the case's inputs (float64, exact integers; text as UTF-8 uint8)
  output.<name>             the reference's outputs on those inputs
  output@<dtype>.<name>     the reference's outputs on the inputs rounded to <dtype>
                            (float32, float16, bfloat16), computed in float64: what an
                            implementation fed <dtype> inputs must reproduce
and string metadata (component, case, versions, seed, params as JSON).
MANIFEST.json records the SHA-256 of every file and each component's spec version, so a
tampered, missing, extra or stale file is reported by name. Full-tier cases are not stored;
they are generated and compared live against the reference.
"""
import fcntl
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from llmref.cases import case_seed, cast_inputs, make_inputs, reference_outputs, widen
from llmref.errors import GoldenError
from llmref.paths import golden_dir
from llmref.spec import Spec, load_spec

GENERATOR_VERSION = 1
MANIFEST = "MANIFEST.json"


def case_file(component: str, case_id: str) -> str:
    return f"{component}/{case_id}.safetensors"


def expected_outputs(spec: Spec, inputs: dict, params: dict) -> dict:
    """{dtype: outputs}: the reference on the inputs as an implementation at each dtype sees them."""
    expected = {"float64": reference_outputs(spec, inputs, params)}
    if spec.float_inputs:
        for dtype in spec.dtypes[1:]:
            expected[dtype] = reference_outputs(spec, widen(cast_inputs(spec, inputs, dtype)), params)
    return expected


def build_case(spec: Spec, case) -> bytes:
    """The safetensors bytes of one case's golden file."""
    from safetensors.numpy import save

    inputs = make_inputs(spec, case)
    tensors = {f"input.{k}": _encode(v) for k, v in inputs.items()}
    for dtype, outputs in expected_outputs(spec, inputs, case.params).items():
        prefix = "output" if dtype == "float64" else f"output@{dtype}"
        tensors.update({f"{prefix}.{k}": _encode(v) for k, v in outputs.items()})
    metadata = {
        "component": spec.id,
        "case": case.id,
        "spec_version": str(spec.version),
        "generator_version": str(GENERATOR_VERSION),
        "seed": str(case_seed(spec.id, case.id)),
        "params": json.dumps(case.params, sort_keys=True),
    }
    return save(tensors, metadata=metadata)


def _encode(value) -> np.ndarray:
    if isinstance(value, str):
        return np.frombuffer(value.encode("utf-8"), dtype=np.uint8).copy()
    if isinstance(value, bytes):
        return np.frombuffer(value, dtype=np.uint8).copy()
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def _decode(dtype: str, arr: np.ndarray):
    if dtype == "str":
        return bytes(arr).decode("utf-8")
    if dtype == "bytes":
        return bytes(arr)
    return arr


def smoke_cases(spec: Spec):
    return [c for c in spec.cases if c.tier == "smoke"]


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
        files = {}
        for case in smoke_cases(spec):
            rel = case_file(component, case.id)
            data = build_case(spec, case)
            (root / rel).write_bytes(data)
            files[rel] = hashlib.sha256(data).hexdigest()
            written.append(rel)
        entries[component] = {"spec_version": spec.version, "files": files}
    with _locked_manifest(root) as manifest:
        manifest["generator_version"] = GENERATOR_VERSION
        manifest.setdefault("components", {}).update(entries)
        manifest["components"] = dict(sorted(manifest["components"].items()))
    return written


@contextmanager
def _locked_manifest(root: Path):
    """Read-modify-write MANIFEST.json under an exclusive lock (several generators may run)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / MANIFEST, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        manifest = json.loads(text) if text.strip() else {}
        yield manifest
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_manifest(root: Path | None = None) -> dict:
    path = (Path(root) if root is not None else golden_dir()) / MANIFEST
    if not path.exists():
        raise GoldenError(f"{path}: manifest missing (run `llmref golden generate`)")
    return json.loads(path.read_text())


def verify(components, root: Path | None = None) -> list:
    """Problems found, as (relative path, reason); empty when every golden is intact."""
    root = Path(root) if root is not None else golden_dir()
    try:
        listed = read_manifest(root).get("components", {})
    except GoldenError as exc:
        return [(MANIFEST, str(exc))]
    problems = []
    for component in components:
        spec = load_spec(component)
        entry = listed.get(component)
        if entry is None:
            problems.append((component, "not in MANIFEST.json (run `llmref golden generate`)"))
            continue
        if entry["spec_version"] != spec.version:
            problems.append((component, f"goldens are for spec version {entry['spec_version']}, "
                                        f"spec is version {spec.version}: regenerate"))
        expected = {case_file(component, c.id) for c in smoke_cases(spec)}
        for rel in sorted(expected - set(entry["files"])):
            problems.append((rel, "case has no golden in MANIFEST.json"))
        for rel, digest in sorted(entry["files"].items()):
            path = root / rel
            if not path.exists():
                problems.append((rel, "missing"))
            elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                problems.append((rel, "SHA-256 differs from MANIFEST.json (tampered or stale)"))
        for path in sorted((root / component).glob("*")):
            rel = f"{component}/{path.name}"
            if rel not in entry["files"]:
                problems.append((rel, "extra file not in MANIFEST.json"))
    for extra in sorted(set(listed) - set(components)):
        problems.append((extra, "in MANIFEST.json but no spec has this id"))
    return problems


def load_case(spec: Spec, case, dtype: str = "float64"):
    """(inputs at float64/exact, expected outputs for `dtype`) for one case.

    Smoke cases come from the golden file, after checking its hash against the manifest;
    full cases are generated and computed live by the reference."""
    if case.tier == "full":
        inputs = make_inputs(spec, case)
        return inputs, expected_outputs(spec, inputs, case.params)[_golden_dtype(spec, dtype)]
    from safetensors.numpy import load

    rel = case_file(spec.id, case.id)
    path = golden_dir() / rel
    if not path.exists():
        raise GoldenError(f"{rel}: missing (run `llmref golden generate --component {spec.id}`)")
    data = path.read_bytes()
    entry = read_manifest().get("components", {}).get(spec.id, {})
    if entry.get("files", {}).get(rel) != hashlib.sha256(data).hexdigest():
        raise GoldenError(f"{rel}: SHA-256 differs from MANIFEST.json (tampered or stale)")
    tensors = load(data)
    inputs = {t.name: _decode(t.dtype, tensors[f"input.{t.name}"]) for t in spec.inputs}
    prefix = "output" if _golden_dtype(spec, dtype) == "float64" else f"output@{dtype}"
    expected = {t.name: _decode(t.dtype, tensors[f"{prefix}.{t.name}"]) for t in spec.outputs}
    return inputs, expected


def _golden_dtype(spec: Spec, dtype: str) -> str:
    return dtype if spec.float_inputs else "float64"
