"""The differential fuzzer (llmref.fuzz, `llmref tokenizers fuzz`): it finds and shrinks a planted
mismatch, prints both id sequences around the first difference, and - bounded - finds none for
every vocabulary the tests have (crosscheck). A longer run is a CLI run:
`llmref tokenizers fuzz --against tiktoken cl100k_base --examples 5000`."""
import pytest
from _tokenizer_files import (SENTENCEPIECE, TIKTOKEN, TOKENIZER_JSON, minilm_json, sentencepiece_model,
                              tiktoken_available, tokenizer_json)

from llmref import fuzz
from llmref.cli import main
from llmref.tokenizers import Tokenizer

EXAMPLES = 60  # per vocabulary in CI; the corpus texts are compared too


def test_mismatch_report_points_at_the_first_difference():
    m = fuzz.Mismatch("abc", [1, 2, 3, 4], [1, 2, 9, 4])
    assert m.index == 2
    report = m.report()
    assert "'abc'" in report and "index 2" in report and "[1, 2, 3, 4]" in report and "[1, 2, 9, 4]" in report
    assert fuzz.Mismatch("a", [1], [1, 2]).index == 1


def test_shrinks_a_planted_mismatch_to_a_short_string():
    """ours splits every 'x' off, theirs does not: the shortest failing text is 'x'."""
    ours = lambda t: [ord(c) for c in t] + [0] * t.count("x")  # noqa: E731
    theirs = lambda t: [ord(c) for c in t]  # noqa: E731
    result = fuzz.fuzz(ours, theirs, examples=200)
    assert result.mismatch is not None and result.mismatch.text == "x"
    assert result.inputs >= result.matches


@pytest.mark.crosscheck
def test_finds_the_gpt2_pattern_planted_on_cl100k():
    """A wrong variant (the GPT-2 pre-tokenisation pattern on cl100k's ranks) against tiktoken's
    cl100k_base: found, shrunk to a few characters, and still a mismatch."""
    tiktoken_available("cl100k_base")
    from llmref.tokenizers import offline_source

    wrong = Tokenizer.from_tiktoken_file(offline_source("cl100k_base"), pattern="gpt2")
    enc = fuzz.tiktoken_library("cl100k_base")
    ours = lambda t: wrong.encode(t, disallowed_special=())  # noqa: E731
    theirs = lambda t: enc.encode(t, disallowed_special=())  # noqa: E731
    result = fuzz.fuzz(ours, theirs, examples=300)
    m = result.mismatch
    assert m is not None and len(m.text) <= 4, m
    assert ours(m.text) != theirs(m.text)
    assert m.ours[m.index] != m.theirs[m.index] or len(m.ours) != len(m.theirs)


def test_cli_exit_codes(capsys):
    assert main(["tokenizers", "fuzz", "--against", "tiktoken", "no_such_encoding", "--examples", "1"]) == 2
    assert "name: unknown tiktoken encoding" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tokenizers", "fuzz", "--against", "llama", "x"])


def _run(capsys, argv):
    code = main(["tokenizers", "fuzz", *argv, "--examples", str(EXAMPLES)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert " exact matches" in out
    print(out)


@pytest.mark.crosscheck
@pytest.mark.parametrize("name", TIKTOKEN)
def test_bounded_fuzz_tiktoken(capsys, name):
    tiktoken_available(name)
    _run(capsys, ["--against", "tiktoken", name])


@pytest.mark.crosscheck
@pytest.mark.parametrize("family", TOKENIZER_JSON)
def test_bounded_fuzz_tokenizer_json(capsys, family):
    pytest.importorskip("tokenizers", reason="the cross-check needs the tokenizers library")
    _run(capsys, ["--against", "tokenizers", str(tokenizer_json(family))])


@pytest.mark.crosscheck
def test_bounded_fuzz_minilm(capsys):
    """all-MiniLM-L6-v2's tokenizer.json, WordPiece in mode hf, on the blocks whose Unicode
    tables agree (the spec names the others)."""
    pytest.importorskip("tokenizers", reason="the cross-check needs the tokenizers library")
    _run(capsys, ["--against", "tokenizers", str(minilm_json()), "--blocks", "stable"])


@pytest.mark.crosscheck
@pytest.mark.parametrize("kind,normalizer,extra", SENTENCEPIECE)
def test_bounded_fuzz_sentencepiece(capsys, kind, normalizer, extra):
    pytest.importorskip("sentencepiece", reason="the cross-check needs sentencepiece")
    _run(capsys, ["--against", "sentencepiece", str(sentencepiece_model(kind, normalizer, extra))])
