"""WordPiece tokenization, BERT style (specs/wordpiece_encode.yaml), in the two behaviours that
ship with BERT-family models:

mode='hf' (the default): the tokenizers library's BertNormalizer, BertPreTokenizer and WordPiece
model - what every BERT-family tokenizer.json (and transformers' fast tokenizers) runs
(tokenizers/src/normalizers/bert.rs, pre_tokenizers/bert.rs, models/wordpiece/mod.rs):
  1. special (added) tokens are cut out of the raw text first, leftmost and longest first, and
     emitted as their ids ("[CLS] hi" -> [CLS], ...);
  2. clean: drop U+0000, U+FFFD and every 'other' character (Cc, Cf, Cs, Co, Cn) except
     \t \n \r; map whitespace (\t \n \r and Unicode White_Space) to " ";
  3. spaces around CJK ideographs (bert.rs ranges);
  4. strip accents (NFD, drop Mn) when strip_accents says so ('auto': exactly when
     lowercasing), THEN lowercase character by character (Rust's char::to_lowercase: Σ -> σ
     everywhere, never the word-final ς of Python's str.lower());
  5. split on whitespace (dropped), then every punctuation character is its own word.
mode='google': Google's original BERT tokenization.py (BasicTokenizer): clean (drop NUL,
  U+FFFD and Cc/Cf; whitespace = \t \n \r and Zs), spaces around CJK, split on whitespace,
  per word lowercase with str.lower() (word-final Σ -> ς) and strip accents AFTER
  lowercasing, split every punctuation character off; special-token names are plain text.
Both: wordpiece(w) is greedy longest-match-first from the left; pieces after the first carry
"##"; if some position matches no piece, or the word has more than max_chars characters, the
WHOLE word becomes [UNK].
"""
import unicodedata
from collections import Counter
from functools import lru_cache

import numpy as np
import regex

from llmref.errors import InputError
from llmref.ref._corpus import CORPUS, sample_text
from llmref.ref._text import as_text, public_text
from llmref.validate import flag, integer

MODES = ("hf", "google")
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Rust's char::is_whitespace: the Unicode White_Space property (U+001C-U+001F are not in it,
# though Python's str.isspace() says they are).
WHITE_SPACE = frozenset([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                         0x2028, 0x2029, 0x202F, 0x205F, 0x3000])
# bert.rs is_chinese_char: Google's ranges, except 0x2B920 where Google reads 0x2B820.
HF_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
                 (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


# CJK Unified Ideographs blocks (tokenization.py _is_chinese_char); Hangul and kana are not here.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def parse_vocab(text: str, name: str = "vocab") -> dict:
    """vocab.txt contents (one token per line, id = line number from 0) -> {token: id}; an
    empty vocabulary, an empty or padded line, a repeated token and a byte-order mark before
    the first token are errors naming `name`."""
    if text.startswith("\ufeff"):
        raise InputError(f"{name}: starts with a UTF-8 byte-order mark (U+FEFF), which would "
                         f"become part of the first token; save the file without it")
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
    """Words of Google's BasicTokenizer (mode 'google'). accents='auto' strips them exactly
    when lowercasing (HF's strip_accents=None); 'strip' and 'keep' force the choice."""
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


def hf_normalize(text: str, lowercase: bool = True, accents: str = "auto", clean: bool = True,
                 split_cjk: bool = True) -> str:
    """The tokenizers library's BertNormalizer (mode 'hf'): clean, space CJK, strip accents,
    then lowercase per character."""
    if clean:
        text = "".join(" " if ord(ch) in WHITE_SPACE else ch for ch in text
                       if ord(ch) not in (0, 0xFFFD) and (ch in "\t\n\r" or not unicodedata.category(ch).startswith("C")))
    if split_cjk:
        text = "".join(f" {ch} " if any(lo <= ord(ch) <= hi for lo, hi in HF_CJK_RANGES) else ch
                       for ch in text)
    if accents == "strip" or (accents == "auto" and lowercase):
        text = strip_accents(text)
    if lowercase:
        text = "".join(ch.lower() for ch in text)  # one character at a time: no final sigma
    return text


def hf_pre_tokenize(text: str) -> list:
    """BertPreTokenizer: split on White_Space (dropped), then isolate each punctuation
    character."""
    words, current = [], ""
    for ch in text:
        if ord(ch) in WHITE_SPACE or is_punctuation(ch):
            if current:
                words.append(current)
            current = ""
            if is_punctuation(ch):
                words.append(ch)
        else:
            current += ch
    return words + ([current] if current else [])


def split_special(text: str, special: list) -> list:
    """text cut at the special names, leftmost and longest first (the tokenizers library's
    added-token matching): [chunk, name, chunk, ..., chunk], odd entries being names."""
    if not special:
        return [text]
    splitter = "|".join(regex.escape(n) for n in sorted(special, key=lambda n: (-len(n), n)))
    return regex.split(f"({splitter})", text)


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


def words(text: str, lowercase: bool = True, accents: str = "auto", mode: str = "hf") -> list:
    """The words of text under one mode (special tokens already cut out)."""
    if mode == "google":
        return basic_tokenize(text, lowercase, accents)
    return hf_pre_tokenize(hf_normalize(text, lowercase, accents))


def encode(text: str, vocab: dict, lowercase: bool = True, accents: str = "auto",
           unk: str = "[UNK]", max_chars: int = 100, mode: str = "hf", special_tokens=()) -> list:
    """Token ids of `text` (no [CLS]/[SEP] added). In mode 'hf' the names in special_tokens
    are cut out of the raw text first and emitted as their ids; mode 'google' reads them as
    text."""
    text = public_text("text", text)
    if mode not in MODES:
        raise InputError(f"mode: expected one of {MODES}, got {mode!r}")
    if unk not in vocab:
        raise InputError(f"vocab: has no unknown token {unk!r}")
    for name in special_tokens:
        if name not in vocab:
            raise InputError(f"special_tokens: {name!r} is not in the vocabulary")
    chunks = split_special(text, list(special_tokens)) if mode == "hf" else [text]
    ids = []
    for k, chunk in enumerate(chunks):
        if k % 2:
            ids.append(vocab[chunk])
            continue
        ids.extend(vocab[p] for w in words(chunk, lowercase, accents, mode)
                   for p in wordpiece(w, vocab, unk, max_chars))
    return ids


def wordpiece_encode_args(text, vocab, lowercase, strip_accents, max_chars, mode, special_tokens):
    """Validated (text, table, lowercase, strip_accents, max_chars, mode, special_tokens)."""
    text = as_text("text", text)
    if strip_accents not in ("auto", "strip", "keep"):
        raise InputError(f"strip_accents: expected 'auto', 'strip' or 'keep', got {strip_accents!r}")
    if mode not in MODES:
        raise InputError(f"mode: expected one of {MODES}, got {mode!r}")
    if not isinstance(special_tokens, (list, tuple)) or not all(isinstance(n, str) and n for n in special_tokens):
        raise InputError(f"special_tokens: expected a list of token names, got {special_tokens!r}")
    table = parse_vocab(as_text("vocab", vocab))
    return (text, table, flag("lowercase", lowercase), strip_accents,
            integer("max_chars", max_chars, low=1), mode, list(special_tokens))


def wordpiece_encode(text, vocab, lowercase=True, strip_accents="auto", max_chars=100, mode="hf",
                     special_tokens=tuple(BERT_SPECIALS)):
    """ids (T,) int64 of `text` under the vocab.txt contents `vocab` (spec entry point)."""
    text, table, lowercase, accents, max_chars, mode, special = wordpiece_encode_args(
        text, vocab, lowercase, strip_accents, max_chars, mode, special_tokens)
    return np.asarray(encode(text, table, lowercase, accents, max_chars=max_chars, mode=mode,
                             special_tokens=special), dtype=np.int64)


# --- case generators (specs/wordpiece_encode.yaml) ---

@lru_cache(maxsize=4)
def wordpiece_vocab(cased: bool = False, greek: bool = False) -> str:
    """vocab.txt contents built from CORPUS (one token per line), deterministic:
    the specials; every character of the basic-tokenised words; '##' + every character that
    occurs inside a word at least twice in the corpus (so a rare inner character makes its word
    [UNK]); the words occurring at least twice; the 3-character stems of longer words with
    '##' + the rest; a few common continuation suffixes. With greek, the characters of the
    'greek' text and '##' + each are appended (final and medial sigma get their own ids)."""
    words = Counter(basic_tokenize(CORPUS, lowercase=not cased))
    inner = Counter(ch for w, n in words.items() for ch in w[1:] for _ in range(n))
    tokens = list(BERT_SPECIALS)
    tokens += sorted({ch for w in words for ch in w})
    tokens += sorted("##" + ch for ch, n in inner.items() if n >= 2)
    tokens += sorted(w for w, n in words.items() if n >= 2 and len(w) > 1)
    tokens += sorted({w[:3] for w in words if len(w) >= 6})
    tokens += sorted({"##" + w[3:] for w in words if len(w) >= 6})
    tokens += ["##s", "##ed", "##ing", "##er", "##ly"]
    if greek:
        chars = sorted({ch for w in words_of_greek(cased) for ch in w})
        tokens += chars + ["##" + ch for ch in chars]
    unique = list(dict.fromkeys(tokens))  # first occurrence wins; order is the id
    return "\n".join(unique) + "\n"


def words_of_greek(cased: bool) -> set:
    """The words of the 'greek' text under both modes (so ς and σ are both covered)."""
    return {w for mode in MODES for w in words(sample_text("greek"), not cased, "auto", mode)}


def wordpiece_case(rng, sample, cased=False, greek=False):
    """Inputs of a wordpiece_encode case: a sample and the corpus vocabulary (plus the Greek
    characters for the final-sigma cases)."""
    return {"text": sample_text(sample), "vocab": wordpiece_vocab(bool(cased), bool(greek))}
