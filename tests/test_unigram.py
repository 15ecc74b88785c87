"""Unigram (SentencePiece): normaliser, float32 Viterbi, user-defined scoring, bad input, and
agreement with sentencepiece on models it trains on the committed corpus (crosscheck). Shipped
.model files of every type and normaliser are cross-checked in tests/test_tokenizers.py."""
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmref.errors import InputError
from llmref.ref import _sentencepiece, unigram
from llmref.ref._corpus import CORPUS, SAMPLES, sample_text
from llmref.ref.unigram import unigram_vocab

PIECES, SCORES, TYPES = unigram_vocab()


def test_normalizer():
    assert unigram.normalize("  hello   world ") == "\u2581hello\u2581world"
    assert unigram.normalize("hello", add_dummy_prefix=False) == "hello"
    assert unigram.normalize(" a  b", remove_extra_whitespaces=False) == "\u2581\u2581a\u2581\u2581b"
    assert unigram.normalize("   ") == ""


def test_viterbi_prefers_higher_total_and_earliest_start_on_ties():
    pieces = {"a": (0, -1.0), "b": (1, -1.0), "ab": (2, -1.5), "abc": (3, -5.0), "c": (4, -1.0)}
    assert [i for _, _, i in unigram.viterbi("abc", pieces, -20.0, 3, False)] == [2, 4]
    tie = {"a": (0, -1.0), "b": (1, -1.0), "ab": (2, -2.0)}  # a+b ties with ab
    assert [i for _, _, i in unigram.viterbi("ab", tie, -20.0, 2, False)] == [2]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=50))
def test_ids_in_range(text):
    ids = unigram.unigram_encode(text, PIECES, SCORES, TYPES)
    assert ((0 <= ids) & (ids < len(TYPES))).all()


def test_bad_input(tmp_path):
    with pytest.raises(InputError, match="^types: expected exactly one unknown"):
        unigram.unigram_encode("a", "a\nb", np.zeros(2), np.asarray([1, 1], np.int32))
    with pytest.raises(InputError, match="^pieces: 2 pieces but 3 scores"):
        unigram.unigram_encode("a", "a\n<unk>", np.zeros(3), np.asarray([1, 2, 1], np.int32))
    with pytest.raises(InputError, match="^types: byte_fallback needs 256"):
        unigram.unigram_encode("a", PIECES, SCORES, TYPES, byte_fallback=True)
    with pytest.raises(InputError, match="^text: invalid UTF-8"):
        unigram.unigram_encode(b"\xff", PIECES, SCORES, TYPES)
    with pytest.raises(InputError, match="^scores: expected 1 dimensions"):
        unigram.unigram_encode("a", PIECES, np.asarray(SCORES)[:, None], TYPES)
    with pytest.raises(InputError, match="^types: expected an integer array"):
        unigram.unigram_encode("a", PIECES, SCORES, np.asarray(TYPES, np.float64))
    with pytest.raises(InputError, match="^add_dummy_prefix: expected True or False"):
        unigram.unigram_encode("a", PIECES, SCORES, TYPES, add_dummy_prefix="yes")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"\x0a\x05\x0a\x03ab")  # a piece message cut short
    with pytest.raises(InputError, match="^path: not a SentencePiece model"):
        _sentencepiece.load(bad)
    bad.write_bytes(b"")
    with pytest.raises(InputError, match="^path: the file is empty"):
        _sentencepiece.load(bad)
    twice = b"\x0a\x03\x0a\x01a" * 2  # piece 'a' twice
    bad.write_bytes(twice)
    with pytest.raises(InputError, match="^path: piece 'a' is defined twice"):
        _sentencepiece.load(bad)


def test_user_defined_pieces_score_from_flt_min():
    """unigram_model.cc: max_score_ starts at FLT_MIN, so with log-probability scores a
    user-defined piece scores float32(len * FLT_MIN) - 0.1 = -0.1, whatever its length."""
    model = unigram.Model(["<unk>", "a", "b", "abab"], [0, -1.0, -1.0, 0], [2, 1, 1, 4])
    assert model.lookup["abab"] == (3, -0.1)
    assert model.encode("abab") == [0, 3]  # "▁" is unknown, then the user-defined piece


def test_path_scores_are_float32():
    """a + b = -2.9999999 beats ab = -3.0 in float64 but not in float32, where both are -3.0:
    the earlier-found ab stays, as sentencepiece (float32 sums, strictly greater replaces)."""
    pieces = {"a": (0, -1.0), "b": (1, -1.9999999), "ab": (2, -3.0)}
    assert [i for _, _, i in unigram.viterbi("ab", pieces, -20.0, 2, False)] == [2]


def _train(tmp_path, **options):
    spm = pytest.importorskip("sentencepiece", reason="crosscheck needs sentencepiece")
    lines = [line for line in CORPUS.replace("\r", "").split("\n") if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 4), model_writer=model, model_type="unigram",
        vocab_size=600, hard_vocab_limit=False, normalization_rule_name="identity",
        character_coverage=0.98, num_threads=1, minloglevel=2, **options)
    path = tmp_path / "corpus.model"
    path.write_bytes(model.getvalue())
    return spm.SentencePieceProcessor(model_file=str(path)), _sentencepiece.load(path)


OPTIONS = [{}, {"byte_fallback": True}, {"split_digits": True}, {"add_dummy_prefix": False},
           {"remove_extra_whitespaces": False}, {"user_defined_symbols": ["<tag>", "\u2581the"]}]


@pytest.mark.crosscheck
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_equals_sentencepiece_on_corpus(tmp_path, options):
    processor, model = _train(tmp_path, **options)
    assert model.pieces == [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    assert np.allclose(model.scores, [processor.get_score(i) for i in range(len(model.pieces))])
    for name in sorted(SAMPLES) + ["corpus", "special"]:
        text = sample_text(name) + " <tag>x 12345"
        assert model.encode(text) == processor.encode(text), name


@pytest.mark.crosscheck
def test_equals_sentencepiece_on_generated_text(tmp_path_factory):
    processor, model = _train(tmp_path_factory.mktemp("spm"), byte_fallback=True, split_digits=True)

    @settings(max_examples=150, deadline=None)
    @given(st.text(max_size=50) | st.text(" ab1\u4e2d😀\t▁", max_size=30))
    def check(text):
        assert model.encode(text) == processor.encode(text)

    check()
