"""Where the shipped data lives: `specs/` and `golden/`, installed as llmref.specs / llmref.golden."""
import importlib.util
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)  # a package does not move while the process runs; each lookup is 0.2 ms
def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    return Path(list(spec.submodule_search_locations)[0])


def specs_dir() -> Path:
    return _package_dir("llmref.specs")


def golden_dir() -> Path:
    return _package_dir("llmref.golden")
