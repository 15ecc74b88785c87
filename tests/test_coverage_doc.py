"""docs/coverage.md is generated (llmref coverage) and describes the specs as they are: its
fingerprint equals the one computed from today's specs, and it names every component and
every wrong variant with the cases that reject it (none left unrejected)."""
from pathlib import Path

from llmref.coverage import COMMAND, committed_fingerprint, fingerprint
from llmref.spec import all_specs

DOC = Path(__file__).resolve().parents[1] / "docs" / "coverage.md"


def test_the_committed_coverage_is_fresh():
    text = DOC.read_text()
    assert committed_fingerprint(text) == fingerprint(), f"docs/coverage.md is stale: {COMMAND}"


def test_every_component_and_wrong_variant_is_listed_and_rejected():
    text = DOC.read_text()
    for spec in all_specs():
        assert f"| {spec.id} |" in text and f"### {spec.id}\n" in text, spec.id
        section = text.split(f"### {spec.id}\n", 1)[1].split("\n### ", 1)[0]
        for variant in spec.wrong_variants:
            assert f"| variant:{variant.id} |" in section, (spec.id, variant.id)
    assert "| NONE |" not in text and " FAIL" not in text
