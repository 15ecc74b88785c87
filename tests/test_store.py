"""The golden store refuses what it cannot trust -- tampered, stale, malformed, missing or
not-a-file goldens -- with one named error, never a traceback or a hang, and feeds an
auditee exactly the bits it stored."""
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

import llmref
from llmref.cases import case_digest
from llmref.dtypes import FORMATS
from llmref.errors import GoldenError
from llmref.paths import golden_dir, specs_dir
from llmref.spec import load_spec, parse_spec
from llmref.store import MANIFEST, golden_key, load_case, verify
from llmref.tensorfile import dumps, loads


@pytest.fixture
def golden_copy(tmp_path, monkeypatch):
    root = tmp_path / "golden"
    shutil.copytree(golden_dir(), root)
    monkeypatch.setattr("llmref.store.golden_dir", lambda: root)
    return root


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "llmref", *args], capture_output=True, text=True,
                          timeout=600)


def _rehash(root, rel):
    """Update the manifest so a changed file passes the hash check (a forger's move)."""
    manifest = json.loads((root / MANIFEST).read_text())
    component, name = rel.split("/")
    entry = manifest["components"][component]["cases"][name.removesuffix(".safetensors")]
    entry["sha256"] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    (root / MANIFEST).write_text(json.dumps(manifest))


# --- the bits fed are the bits stored --------------------------------------------------

@pytest.mark.parametrize("component,case,dtype", [("kv_write", "tiny_with_padding", "bfloat16"),
                                                   ("softmax", "random_rows", "float16"),
                                                   ("sdpa", "gqa_causal_chunk", "bfloat16")])
def test_auditee_is_fed_the_stored_bits_whatever_rounding_is_installed(monkeypatch, component, case, dtype):
    """The half-precision inputs come from the golden file itself: with every rounding
    function llmref and ml_dtypes offer swapped for a deliberately wrong one (double rounding
    through float32, as an older ml_dtypes did), the auditee still receives the stored bits."""
    spec = load_spec(component)
    raw = (golden_dir() / f"{component}/{case}.safetensors").read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])  # read with json alone
    body = raw[8 + int.from_bytes(raw[:8], "little"):]
    stored = {}
    for t in spec.inputs:
        if t.dtype == "float":
            entry = header[golden_key("input", t.name, dtype)]
            assert entry["dtype"] == FORMATS[dtype].safetensors
            begin, end = entry["data_offsets"]
            stored[t.name] = np.frombuffer(body[begin:end], dtype=FORMATS[dtype].bits_dtype)

    def double_rounding(x, name):
        import ml_dtypes

        return np.asarray(x, np.float64).astype(np.float32).astype(
            ml_dtypes.bfloat16 if name == "bfloat16" else name)

    monkeypatch.setattr("llmref.dtypes.round_to", double_rounding)
    monkeypatch.setattr("llmref.cases.round_to", double_rounding)
    seen = {}

    def spy(**kwargs):
        seen.update(kwargs)
        raise llmref.Unsupported("only looking")

    llmref.audit(spec, spy, cases=[case], dtype=dtype)
    for name, bits in stored.items():
        assert seen[name].dtype == FORMATS[dtype].numpy
        assert np.array_equal(seen[name].view(FORMATS[dtype].bits_dtype).reshape(-1), bits), name


def test_the_golden_from_the_trust_issue_holds_the_directly_rounded_value():
    at = load_case(load_spec("kv_write"), load_spec("kv_write").case("tiny_with_padding"), "bfloat16")
    exact = load_case(load_spec("kv_write"), load_spec("kv_write").case("tiny_with_padding")).inputs
    flat, wide = at.inputs["v_cache"].reshape(-1), exact["v_cache"].reshape(-1)
    assert abs(wide[157] - -0.96289063876) < 1e-9
    assert float(flat[157]) == -0.96484375


# --- stale goldens ----------------------------------------------------------------------

def _edited_softmax(mutate):
    data = yaml.safe_load((specs_dir() / "softmax.yaml").read_text())
    mutate(data)
    return parse_spec(data, specs_dir() / "softmax.yaml")  # as if the shipped file had changed


@pytest.mark.parametrize("mutate,what", [
    (lambda d: d.update(version=d["version"] + 1), "spec version"),
    (lambda d: d["cases"][0]["inputs"]["x"].update(std=2.5), "different case definition"),
    (lambda d: d["cases"][0]["dims"].update(N=38), "different case definition"),
    (lambda d: d["cases"][0].update(params={"axis": 0}), "different case definition"),
])
def test_a_changed_spec_refuses_its_old_goldens(mutate, what):
    spec = _edited_softmax(mutate)
    with pytest.raises(GoldenError) as info:
        llmref.audit(spec, llmref.ref.softmax.softmax, cases=["random_rows"])
    message = str(info.value)
    assert what in message and "softmax" in message
    assert "llmref golden generate --component softmax" in message
    if what != "spec version":
        assert "random_rows" in message


def test_case_digest_covers_the_definition():
    spec = load_spec("softmax")
    case = spec.case("random_rows")
    assert case_digest(spec, case) == case_digest(spec, copy.deepcopy(case))
    assert case_digest(spec, case) != case_digest(spec, spec.case("peaked"))


# --- verify -----------------------------------------------------------------------------

def test_verify_one_component_reports_nothing_about_the_others():
    result = run_cli("golden", "verify", "--component", "softmax")
    assert result.returncode == 0, result.stdout
    assert "FAIL" not in result.stdout


def test_verify_names_an_extra_component_folder(golden_copy):
    (golden_copy / "not_a_component").mkdir()
    problems = dict(verify(root=golden_copy))
    assert "no spec has this id" in problems["not_a_component"]


def test_deep_verify_catches_a_forgery_whose_hash_was_updated(golden_copy):
    rel = "softmax/random_rows.safetensors"
    tensors, metadata = loads((golden_copy / rel).read_bytes())
    forged = {k: np.array(v) for k, v in tensors.items()}
    forged["output@float32.y"][0, 0] += 1e-3
    (golden_copy / rel).write_bytes(dumps(forged, metadata))
    _rehash(golden_copy, rel)
    assert verify(["softmax"], golden_copy) == []  # the hashes agree...
    problems = verify(["softmax"], golden_copy, deep=True)
    assert problems == [(rel, "output@float32.y: differs from the reference beyond its float64 tolerance")]
    result = run_cli("golden", "verify", "--deep", "--root", str(golden_copy), "--component", "softmax")
    assert result.returncode == 1 and rel in result.stdout


def test_deep_verify_passes_on_the_committed_goldens():
    assert verify(["softmax", "kv_write", "bpe_encode"], deep=True) == []


# --- malformed things are one named error -----------------------------------------------

@pytest.mark.parametrize("content,reason", [
    ("{not json", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"format_version": 2, "components": []}', "components: must be an object"),
    ('{"format_version": 2, "components": {"softmax": {"spec_version": 1, "cases": {"x": 3}}}}',
     "components.softmax.cases.x"),
    ('{"format_version": 1, "components": {}}', "format_version"),
])
def test_a_malformed_manifest_is_named(golden_copy, content, reason):
    (golden_copy / MANIFEST).write_text(content)
    problems = verify(root=golden_copy)
    assert len(problems) == 1 and problems[0][0] == MANIFEST and reason in problems[0][1]
    spec = load_spec("softmax")
    with pytest.raises(GoldenError, match=reason.split(":")[0]):
        load_case(spec, spec.case("random_rows"))
    result = run_cli("golden", "verify", "--root", str(golden_copy))
    assert result.returncode == 1 and MANIFEST in result.stdout and "Traceback" not in result.stderr


def _replace_with(path, kind):
    path.unlink()
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink loop":
        os.symlink(path.name, path)
    elif kind == "nothing":
        pass


@pytest.mark.parametrize("kind,reason", [("directory", "not a regular file"), ("fifo", "not a regular file"),
                                         ("symlink loop", "cannot be read"), ("nothing", "missing")])
def test_a_golden_that_is_not_a_file_is_named_without_hanging(golden_copy, kind, reason):
    rel = "softmax/random_rows.safetensors"
    _replace_with(golden_copy / rel, kind)
    problems = dict(verify(["softmax"], golden_copy))
    assert reason in problems[rel]
    spec = load_spec("softmax")
    with pytest.raises(GoldenError, match=reason):
        load_case(spec, spec.case("random_rows"))


@pytest.mark.parametrize("damage,reason", [
    (lambda b: (2 ** 40).to_bytes(8, "little") + b[8:], "header claims"),
    (lambda b: b[:8] + b"x" + b[9:], "not valid JSON"),
    (lambda b: b[:20], "header claims"),
    (lambda b: b"", "too short"),
    (lambda b: b[:-8], "offsets"),
])
def test_a_damaged_golden_with_a_matching_hash_is_named(golden_copy, damage, reason):
    rel = "softmax/random_rows.safetensors"
    (golden_copy / rel).write_bytes(damage((golden_copy / rel).read_bytes()))
    _rehash(golden_copy, rel)
    spec = load_spec("softmax")
    with pytest.raises(GoldenError, match=reason):
        load_case(spec, spec.case("random_rows"))


def test_a_golden_lacking_a_tensor_names_the_key(golden_copy):
    rel = "softmax/random_rows.safetensors"
    tensors, metadata = loads((golden_copy / rel).read_bytes())
    del tensors["input@bfloat16.x"]
    (golden_copy / rel).write_bytes(dumps(tensors, metadata))
    _rehash(golden_copy, rel)
    spec = load_spec("softmax")
    with pytest.raises(GoldenError, match="lacks tensor 'input@bfloat16.x'"):
        load_case(spec, spec.case("random_rows"), "bfloat16")


def test_a_tampered_golden_is_refused_by_check_and_selftest(golden_copy):
    rel = "softmax/random_rows.safetensors"
    data = bytearray((golden_copy / rel).read_bytes())
    data[-1] ^= 0xFF
    (golden_copy / rel).write_bytes(bytes(data))
    from llmref.selftest import run_mutants

    with pytest.raises(GoldenError, match="SHA-256"):
        run_mutants("softmax")
    with pytest.raises(GoldenError, match="SHA-256"):
        llmref.audit("softmax", llmref.ref.softmax.softmax)


# --- canonical bytes --------------------------------------------------------------------

def test_canonical_files_do_not_depend_on_insertion_order():
    a = {"b": np.arange(3.0), "a": np.ones((2, 2), np.float32)}
    b = dict(reversed(list(a.items())))
    assert dumps(a, {"z": "1", "y": "2"}) == dumps(b, {"y": "2", "z": "1"})
    data = dumps(a, {"z": "1"})
    assert (8 + int.from_bytes(data[:8], "little")) % 8 == 0  # header padded to 8 bytes


def test_canonical_files_read_back_with_the_safetensors_library():
    from safetensors.numpy import load

    tensors = {"x": np.arange(6, dtype=np.int64).reshape(2, 3), "y": np.linspace(0, 1, 5),
               "m": np.array([True, False]), "h": np.ones(4, np.float16)}
    back = load(dumps(tensors, {"k": "v"}))
    assert back.keys() == tensors.keys()
    for k in tensors:
        assert np.array_equal(back[k], tensors[k]) and back[k].dtype == tensors[k].dtype
