"""A golden pack: everything needed to audit in another language, in one zip file.

    pack.json                  {"format": "llmref-golden-pack", "format_version": 1, ...}
    FORMAT.md                  the golden file format and the judging rules
    specs/<component>.json     each spec as JSON, with every smoke case's derived bounds
    golden/<component>/<case>.safetensors

pack.json lists every file with its SHA-256, so a reader verifies the pack with `json`,
`hashlib` and a safetensors reader alone. The zip is written canonically (sorted entries,
fixed timestamps and permissions): the same goldens give the same bytes.
"""
import hashlib
import json
import zipfile

from llmref import __version__
from llmref.cases import GENERATOR_VERSION
from llmref.dtypes import UNIT_ROUNDOFF, accumulation_dtype
from llmref.paths import golden_dir, specs_dir
from llmref.spec import load_spec
from llmref.errors import GoldenError
from llmref.store import FORMAT_VERSION, ROUNDING, read_manifest, smoke_cases, verify
from llmref.tolerance import reduction_length, tolerance_for

PACK_FORMAT_VERSION = 1
_EPOCH = (1980, 1, 1, 0, 0, 0)


def spec_json(spec) -> dict:
    """A spec as plain JSON, with the bound each smoke case gets at each dtype."""
    tol = spec.tolerance
    cases = []
    for case in spec.cases:
        entry = {"id": case.id, "tier": case.tier, "dims": case.dims, "params": case.params,
                 "note": case.note, "stored": case.tier == "smoke", "expect": case.expect}
        entry["bounds"] = {}
        for dtype in spec.dtypes:
            t = tolerance_for(spec, case, dtype)
            entry["bounds"][dtype] = {"exact": t.exact, "rtol": t.rtol, "atol_scale": t.rtol,
                                      "nmse_max": t.nmse, "unit_roundoff": UNIT_ROUNDOFF[dtype],
                                      "accumulation_dtype": accumulation_dtype(dtype),
                                      "reduction_length": reduction_length(tol.get("reduction"), case)}
        cases.append(entry)
    tensor = lambda t: {"name": t.name, "kind": t.dtype, "shape": list(t.shape), "allow": list(t.allow),
                        "doc": t.doc}
    return {
        "id": spec.id, "version": spec.version, "summary": spec.summary, "definition": spec.definition,
        "conventions": list(spec.conventions), "references": list(spec.references),
        "inputs": [tensor(t) for t in spec.inputs], "outputs": [tensor(t) for t in spec.outputs],
        "params": spec.params, "dtypes": list(spec.dtypes),
        "tolerance": {k: v for k, v in tol.items() if k != "bound"} | (
            {"bound": "per element, stored as bound@<dtype>.<output>"} if tol.get("bound") else {}),
        "tie_aware": spec.ties is not None, "cases": cases,
        "wrong_variants": [{"id": v.id, "description": v.description, "dtype": v.dtype,
                            "catches": list(v.catches)} for v in spec.wrong_variants],
    }


def write_pack(out, components) -> dict:
    """Write the pack of `components` to the zip file `out`; return its pack.json."""
    problems = verify(components)
    if problems:
        raise GoldenError(f"refusing to pack damaged goldens: {problems[0][0]}: {problems[0][1]}")
    manifest = read_manifest()
    files = {"FORMAT.md": (specs_dir() / "FORMAT.md").read_bytes()}
    index = {"format": "llmref-golden-pack", "format_version": PACK_FORMAT_VERSION,
             "golden_format_version": FORMAT_VERSION, "generator_version": GENERATOR_VERSION,
             "llmref_version": __version__, "rounding": ROUNDING, "components": {}}
    for component in components:
        spec = load_spec(component)
        files[f"specs/{component}.json"] = (json.dumps(spec_json(spec), indent=1, sort_keys=True)
                                            + "\n").encode()
        cases = {}
        for case in smoke_cases(spec):
            entry = manifest["components"][component]["cases"][case.id]
            files[f"golden/{entry['file']}"] = (golden_dir() / entry["file"]).read_bytes()
            cases[case.id] = {"file": f"golden/{entry['file']}", "definition": entry["definition"]}
        index["components"][component] = {"spec": f"specs/{component}.json",
                                          "spec_version": spec.version, "cases": cases}
    index["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    files["pack.json"] = (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return index
