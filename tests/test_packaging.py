"""What `pip install` ships: every spec, golden and CUDA source is matched by the package-data
globs, every sub-package is listed, and nothing lands in site-packages as a generic name."""
import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _shipped(package, folder, pattern):
    globs = CONFIG["package-data"][package]
    for path in (ROOT / folder).rglob(pattern):
        rel = path.relative_to(ROOT / folder).as_posix()
        if "__pycache__" in rel:
            continue
        assert any(fnmatch.fnmatchcase(rel, g) and rel.count("/") == g.count("/") for g in globs), \
            f"{folder}/{rel} would not be installed (package-data {package}: {globs})"


def test_specs_goldens_and_cuda_sources_are_package_data():
    _shipped("llmref.specs", "specs", "*.yaml")
    _shipped("llmref.golden", "golden", "*.safetensors")
    _shipped("llmref.golden", "golden", "MANIFEST.json")
    _shipped("llmref.accel.cupy", "accel/cupy", "*.cu")


def test_every_python_package_is_listed_under_the_llmref_name():
    mapping = CONFIG["package-dir"]

    def folder_of(package):  # setuptools: a package not in package-dir sits under its parent's
        parent, _, leaf = package.rpartition(".")
        return mapping[package] if package in mapping else f"{folder_of(parent)}/{leaf}"

    listed = {Path(folder_of(p)).as_posix() for p in CONFIG["packages"]}
    for init in ROOT.glob("*/**/__init__.py"):
        folder = init.parent.relative_to(ROOT).as_posix()
        if folder.startswith(("tests", "bench", "build", ".")):
            continue
        assert folder in listed, f"{folder} has an __init__.py but is not in [tool.setuptools] packages"
    assert all(p == "llmref" or p.startswith("llmref.") for p in CONFIG["packages"])
