"""One house plan: each component's spec, reference, wrong variants, goldens, kernels, tests
and benchmark carry one family name; the table in CONTRIBUTING.md is generated from the
specs and kept fresh; no backend validates on its own or imports across backends."""
import re
from pathlib import Path

from llmref.layout import markdown, misplaced

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- layout-table:begin -->", "<!-- layout-table:end -->"


def test_every_component_file_carries_its_family_name():
    assert misplaced() == []


def test_the_contributing_table_is_generated_and_fresh():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert BEGIN in text and END in text, "CONTRIBUTING.md lacks the generated layout table"
    committed = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert committed == markdown(), "regenerate it: python -m llmref.layout"


def test_no_backend_raises_input_error_itself():
    """Argument checks live once, in the reference's *_args checkers."""
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "accel").rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if "raise InputError" in line]
    assert offenders == []


def test_numba_cuda_does_not_import_numba_cpu():
    pattern = re.compile(r"^\s*(from|import)\s+llmref\.accel\.numba_cpu", re.M)
    offenders = [p.name for p in (ROOT / "accel" / "numba_cuda").glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
