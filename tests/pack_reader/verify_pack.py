"""Verify an llmref golden pack with json, hashlib, zipfile, numpy and safetensors only --
no llmref import -- as a reader in another language would: every hash, every spec, every
tensor's header and bytes. Prints a JSON summary; exits 1 on the first problem."""
import hashlib
import json
import sys
import zipfile

import numpy as np
from safetensors.numpy import load

SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def main(path):
    archive = zipfile.ZipFile(path)
    index = json.loads(archive.read("pack.json"))
    assert index["format"] == "llmref-golden-pack" and index["format_version"] == 1
    for name, digest in index["files"].items():
        assert hashlib.sha256(archive.read(name)).hexdigest() == digest, name
    tensors = 0
    for component, entry in index["components"].items():
        spec = json.loads(archive.read(entry["spec"]))
        assert spec["id"] == component and spec["version"] == entry["spec_version"]
        stored = {c["id"] for c in spec["cases"] if c["stored"]}
        assert stored == set(entry["cases"]), component
        for case in spec["cases"]:
            for dtype in spec["dtypes"]:
                bound = case["bounds"][dtype]
                assert bound["exact"] or 0 < bound["rtol"] <= 0.125, (component, case["id"], dtype)
        for case_id, case in entry["cases"].items():
            data = archive.read(case["file"])
            size = int.from_bytes(data[:8], "little")
            header = json.loads(data[8:8 + size])
            meta = header.pop("__metadata__")
            assert meta["component"] == component and meta["case"] == case_id
            assert meta["definition"] == case["definition"]
            body = data[8 + size:]
            for name, t in header.items():
                begin, end = t["data_offsets"]
                assert end - begin == SIZES[t["dtype"]] * int(np.prod(t["shape"], dtype=np.int64)), name
                assert end <= len(body)
            readable = {k: v for k, v in header.items() if v["dtype"] != "BF16"}
            if len(readable) == len(header):
                loaded = load(data)
                assert set(loaded) == set(header)
            for t in spec["inputs"]:
                assert f"input.{t['name']}" in header, (component, case_id, t["name"])
                for dtype in spec["dtypes"][1:]:
                    if t["kind"] == "float":
                        assert header[f"input@{dtype}.{t['name']}"]["dtype"] == {
                            "float32": "F32", "float16": "F16", "bfloat16": "BF16"}[dtype]
            if meta.get("expect") == "error":  # a rejected input: inputs only, and the reason
                assert meta["error"] and not any(k.startswith("output") for k in header), case_id
                tensors += len(header)
                continue
            for t in spec["outputs"]:
                for dtype in spec["dtypes"]:
                    key = f"output.{t['name']}" if dtype == "float64" else f"output@{dtype}.{t['name']}"
                    assert key in header, (component, case_id, key)
            tensors += len(header)
    print(json.dumps({"components": len(index["components"]), "files": len(index["files"]),
                      "tensors": tensors}))


if __name__ == "__main__":
    main(sys.argv[1])
