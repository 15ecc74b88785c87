"""Character-level tokenizer: round trip, counts, unknown policies, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmref.errors import InputError
from llmref.ref import char as ct

VOCAB = "abc é😀\n"


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=50))
def test_round_trip_counts_and_range(text):
    ids, counts = ct.char_encode(text, VOCAB)
    assert len(ids) == len(text)  # one id per code point under 'unk'
    assert ((0 <= ids) & (ids <= len(VOCAB))).all()
    assert counts.sum() == len(ids) and counts.shape == (len(VOCAB) + 1,)
    known = "".join(ch if ch in VOCAB else "\ufffd" for ch in text)
    assert ct.char_decode(ids, VOCAB) == known
    skipped, _ = ct.char_encode(text, VOCAB, unknown="skip")
    assert ct.char_decode(skipped, VOCAB) == "".join(ch for ch in text if ch in VOCAB)


def test_code_points_not_code_units():
    ids, counts = ct.char_encode("a😀e\u0301", VOCAB)
    assert ids.tolist() == [0, 5, len(VOCAB), len(VOCAB)]  # 'e' + U+0301 is not 'é'
    assert counts[len(VOCAB)] == 2


def test_bad_input():
    with pytest.raises(InputError, match="^text: character 'z'"):
        ct.char_encode("az", VOCAB, unknown="error")
    with pytest.raises(InputError, match="^unknown: "):
        ct.char_encode("a", VOCAB, unknown="replace")
    with pytest.raises(InputError, match="^vocab: character 'a' appears twice"):
        ct.char_encode("a", "aba")
    with pytest.raises(InputError, match="^text: invalid UTF-8"):
        ct.char_encode(b"\xe2\x82", VOCAB)
    with pytest.raises(InputError, match="^ids: 9 is not a character id"):
        ct.char_decode(np.asarray([0, 9]), VOCAB)
    with pytest.raises(InputError, match="^ids: expected integer token ids"):
        ct.char_decode([0.5], VOCAB)
    with pytest.raises(InputError, match="^text: lone surrogate U\\+D800"):
        ct.char_encode("a\ud800", VOCAB)


def test_decode_of_nothing():
    ids, _ = ct.char_encode("", VOCAB)
    assert ct.char_decode(ids, VOCAB) == ct.char_decode([], VOCAB) == ""
