"""The golden pack verifies with json + safetensors alone, in a process that never imports
llmref, and its bytes are reproducible."""
import json
import subprocess
import sys
from pathlib import Path

READER = Path(__file__).parent / "pack_reader" / "verify_pack.py"
# Run the reader with every import of llmref refused, so the pack provably stands alone.
BLOCK_LLMREF = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "llmref" or name.startswith("llmref."):
            raise ImportError("the pack reader must not import llmref")
sys.meta_path.insert(0, Refuse())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_pack_verifies_without_llmref(tmp_path):
    out = tmp_path / "pack.zip"
    made = subprocess.run([sys.executable, "-m", "llmref", "golden", "pack", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr
    check = subprocess.run([sys.executable, "-c", BLOCK_LLMREF, str(READER), str(out)],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    summary = json.loads(check.stdout)
    assert summary["components"] == len(list((Path(__file__).parents[1] / "specs").glob("*.yaml")))
    assert summary["tensors"] > 1000


def test_pack_bytes_are_reproducible(tmp_path):
    from llmref.pack import write_pack

    write_pack(tmp_path / "a.zip", ["softmax", "kv_write"])
    write_pack(tmp_path / "b.zip", ["softmax", "kv_write"])
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
