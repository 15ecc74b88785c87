"""BERT WordPiece tokenization (specs/wordpiece_encode.yaml).

encode(text) = concat(wordpiece(w) for w in basic_tokenize(text)), following Google BERT's
tokenization.py (BasicTokenizer, WordpieceTokenizer):
  basic_tokenize: clean (drop NUL, U+FFFD and control characters; whitespace -> " "), put
  spaces around CJK ideographs, split on whitespace, per word lowercase and strip accents
  (NFD, drop nonspacing marks Mn), split every punctuation character off, split again.
  wordpiece: greedy longest-match-first from the left; pieces after the first carry "##"; if
  some position matches no piece, or the word has more than max_chars characters, the WHOLE
  word becomes [UNK].
"""
import unicodedata

import numpy as np

from llmref.errors import InputError
from llmref.ref.bpe import as_text

# CJK Unified Ideographs blocks (tokenization.py _is_chinese_char); Hangul and kana are not here.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def parse_vocab(text: str, name: str = "vocab") -> dict:
    """vocab.txt contents (one token per line, id = line number from 0) -> {token: id}."""
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()  # the final newline
    vocab = {}
    for i, token in enumerate(tokens):
        token = token.rstrip("\r")
        if not token or token.strip() != token:
            raise InputError(f"{name}: line {i + 1} is empty or has surrounding whitespace")
        if token in vocab:
            raise InputError(f"{name}: token {token!r} appears twice (lines {vocab[token] + 1} and {i + 1})")
        vocab[token] = i
    if not vocab:
        raise InputError(f"{name}: the vocabulary is empty")
    return vocab


def load_vocab(path) -> dict:
    """A BERT vocab.txt file -> {token: id}."""
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_vocab(handle.read(), "path")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"path: cannot read {path} as a UTF-8 vocab.txt ({exc})") from None


def is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch: str) -> bool:
    """Cc/Cf characters except tab, newline and carriage return (those count as whitespace)."""
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf")


def is_punctuation(ch: str) -> bool:
    """ASCII 33-47, 58-64, 91-96, 123-126 (so ^ $ ` are punctuation) or Unicode category P*."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(ch: str) -> bool:
    return any(lo <= ord(ch) <= hi for lo, hi in CJK_RANGES)


def clean_text(text: str) -> str:
    """Drop NUL, U+FFFD and control characters; map every whitespace character to ' '."""
    return "".join(" " if is_whitespace(ch) else ch for ch in text
                   if ord(ch) not in (0, 0xFFFD) and not is_control(ch))


def space_cjk(text: str) -> str:
    """' ' + ch + ' ' around every CJK ideograph, so each becomes a word."""
    return "".join(f" {ch} " if is_cjk(ch) else ch for ch in text)


def strip_accents(word: str) -> str:
    """NFD, then drop the nonspacing marks (category Mn): 'café' -> 'cafe'."""
    return "".join(ch for ch in unicodedata.normalize("NFD", word) if unicodedata.category(ch) != "Mn")


def split_punctuation(word: str) -> list:
    """Every punctuation character becomes its own word: 'a.b!' -> ['a', '.', 'b', '!']."""
    out, current = [], ""
    for ch in word:
        if is_punctuation(ch):
            out.extend([current, ch] if current else [ch])
            current = ""
        else:
            current += ch
    return out + ([current] if current else [])


def basic_tokenize(text: str, lowercase: bool = True, accents: str = "auto",
                   split_cjk: bool = True) -> list:
    """Words of BERT's BasicTokenizer. accents='auto' strips them exactly when lowercasing
    (HF's strip_accents=None); 'strip' and 'keep' force the choice."""
    text = clean_text(text)
    if split_cjk:
        text = space_cjk(text)
    words = []
    for word in text.split():
        if lowercase:
            word = word.lower()
        if accents == "strip" or (accents == "auto" and lowercase):
            word = strip_accents(word)
        words.extend(split_punctuation(word))
    return words


def wordpiece(word: str, vocab: dict, unk: str = "[UNK]", max_chars: int = 100,
              prefix: str = "##") -> list:
    """Greedy longest-match-first pieces of one word; the whole word -> [unk] on failure."""
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        for stop in range(len(word), start, -1):  # longest candidate first
            piece = word[start:stop] if start == 0 else prefix + word[start:stop]
            if piece in vocab:
                break
        else:
            return [unk]  # no piece matches at `start`: nothing of the word is kept
        pieces.append(piece)
        start = stop
    return pieces


def encode(text: str, vocab: dict, lowercase: bool = True, accents: str = "auto",
           unk: str = "[UNK]", max_chars: int = 100) -> list:
    """Token ids of `text` (no [CLS]/[SEP] added)."""
    if unk not in vocab:
        raise InputError(f"vocab: has no unknown token {unk!r}")
    return [vocab[p] for w in basic_tokenize(text, lowercase, accents)
            for p in wordpiece(w, vocab, unk, max_chars)]


def wordpiece_encode(text, vocab, lowercase=True, strip_accents="auto", max_chars=100):
    """ids (T,) int64 of `text` under the vocab.txt contents `vocab` (spec entry point)."""
    text = as_text("text", text)
    if strip_accents not in ("auto", "strip", "keep"):
        raise InputError(f"strip_accents: expected 'auto', 'strip' or 'keep', got {strip_accents!r}")
    if not isinstance(lowercase, (bool, np.bool_)):
        raise InputError(f"lowercase: expected a bool, got {lowercase!r}")
    if isinstance(max_chars, bool) or not isinstance(max_chars, (int, np.integer)) or max_chars < 1:
        raise InputError(f"max_chars: expected an integer >= 1, got {max_chars!r}")
    table = parse_vocab(as_text("vocab", vocab))
    return np.asarray(encode(text, table, bool(lowercase), strip_accents, max_chars=int(max_chars)),
                      dtype=np.int64)
