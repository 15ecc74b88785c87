"""Wrong WordPiece variants seen in the wild (specs/wordpiece_encode.yaml); each must fail its
audit."""
import numpy as np

from llmref.ref import wordpiece
from llmref.ref.wordpiece import basic_tokenize


def _wordpiece_partial(word, vocab, unk="[UNK]", max_chars=100, prefix="##"):
    """Greedy matching that keeps the pieces found before a failure, then one [UNK]."""
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        for stop in range(len(word), start, -1):
            piece = word[start:stop] if start == 0 else prefix + word[start:stop]
            if piece in vocab:
                break
        else:
            return pieces + [unk]
        pieces.append(piece)
        start = stop
    return pieces


def _wordpiece_with(text, vocab, lowercase, strip_accents, max_chars, mode, special_tokens,
                    words=None, piece=None):
    """wordpiece_encode with the word splitter and the piece matcher swapped out."""
    text, table, lowercase, accents, max_chars, mode, special = wordpiece.wordpiece_encode_args(
        text, vocab, lowercase, strip_accents, max_chars, mode, special_tokens)
    words = words or wordpiece.words
    piece = piece or wordpiece.wordpiece
    chunks = wordpiece.split_special(text, special) if mode == "hf" else [text]
    ids = []
    for k, chunk in enumerate(chunks):
        if k % 2:
            ids.append(table[chunk])
        else:
            ids.extend(table[p] for w in words(chunk, lowercase, accents, mode)
                       for p in piece(w, table, "[UNK]", max_chars))
    return np.asarray(ids, dtype=np.int64)


_SPECIALS = tuple(wordpiece.BERT_SPECIALS)


def wordpiece_partial_pieces(text, vocab, lowercase=True, strip_accents="auto", max_chars=100,
                             mode="hf", special_tokens=_SPECIALS):
    return _wordpiece_with(text, vocab, lowercase, strip_accents, max_chars, mode, special_tokens,
                           piece=_wordpiece_partial)


def wordpiece_strip_without_lowercase(text, vocab, lowercase=True, strip_accents="auto",
                                      max_chars=100, mode="hf", special_tokens=_SPECIALS):
    """Strips accents when asked to lowercase, but never lowercases."""
    strip = "strip" if lowercase or strip_accents == "strip" else strip_accents
    return _wordpiece_with(text, vocab, False, strip, max_chars, mode, special_tokens)


def wordpiece_cased_strips_accents(text, vocab, lowercase=True, strip_accents="auto",
                                   max_chars=100, mode="hf", special_tokens=_SPECIALS):
    """strip_accents 'auto' always strips, whatever the casing."""
    strip = "strip" if strip_accents == "auto" else strip_accents
    return _wordpiece_with(text, vocab, lowercase, strip, max_chars, mode, special_tokens)


def wordpiece_no_cjk_split(text, vocab, lowercase=True, strip_accents="auto", max_chars=100,
                           mode="hf", special_tokens=_SPECIALS):
    def words(chunk, lowercase, accents, mode):
        if mode == "google":
            return basic_tokenize(chunk, lowercase, accents, split_cjk=False)
        return wordpiece.hf_pre_tokenize(wordpiece.hf_normalize(chunk, lowercase, accents, split_cjk=False))

    return _wordpiece_with(text, vocab, lowercase, strip_accents, max_chars, mode, special_tokens, words)


def wordpiece_python_lower(text, vocab, lowercase=True, strip_accents="auto", max_chars=100,
                           mode="hf", special_tokens=_SPECIALS):
    """The hf pipeline lowercasing with Python's str.lower(), which turns a word-final Σ into ς
    where the tokenizers library (per character) gives σ."""
    def words(chunk, lowercase, accents, mode):
        if mode == "google":
            return basic_tokenize(chunk, lowercase, accents)
        normalized = wordpiece.hf_normalize(chunk, False, "strip" if accents == "strip" or (accents == "auto" and lowercase) else "keep")
        return wordpiece.hf_pre_tokenize(normalized.lower() if lowercase else normalized)

    return _wordpiece_with(text, vocab, lowercase, strip_accents, max_chars, mode, special_tokens, words)


def wordpiece_specials_as_text(text, vocab, lowercase=True, strip_accents="auto", max_chars=100,
                               mode="hf", special_tokens=_SPECIALS):
    """The hf pipeline without the added-token pass: '[CLS]' in the text becomes [ cl ##s ]."""
    return _wordpiece_with(text, vocab, lowercase, strip_accents, max_chars, mode, [])
