"""Character-level tokenization with an unknown-symbol policy (specs/char_encode.yaml).

A vocabulary is a string of distinct characters; character k has id k, and the unknown symbol
has id len(vocab). A "character" is one Unicode code point (not a grapheme cluster and not a
UTF-16 code unit), with no normalisation: "é" precomposed and "e" + U+0301 differ.
"""
import numpy as np

from llmref.errors import InputError
from llmref.ref._corpus import SAMPLES, sample_text
from llmref.ref._text import as_text, public_text, token_ids

POLICIES = ("unk", "skip", "error")


def char_vocab(vocab) -> dict:
    """{character: id} of a vocabulary string; repeated characters are an error."""
    vocab = as_text("vocab", vocab)
    table = {}
    for k, ch in enumerate(vocab):
        if ch in table:
            raise InputError(f"vocab: character {ch!r} appears twice (positions {table[ch]} and {k})")
        table[ch] = k
    return table


def encode(text: str, table: dict, unknown: str = "unk") -> list:
    """ids of the code points of text; an unknown one -> len(table) ('unk'), dropped ('skip'),
    or an error naming text ('error')."""
    text = public_text("text", text)
    if unknown not in POLICIES:
        raise InputError(f"unknown: expected one of {POLICIES}, got {unknown!r}")
    ids = []
    for k, ch in enumerate(text):
        if ch in table:
            ids.append(table[ch])
        elif unknown == "unk":
            ids.append(len(table))
        elif unknown == "error":
            raise InputError(f"text: character {ch!r} (U+{ord(ch):04X}) at index {k} is not in the vocabulary")
    return ids


def count_tokens(ids, n_ids: int) -> np.ndarray:
    """counts[i] = number of occurrences of id i, for i in [0, n_ids)."""
    return np.bincount(np.asarray(ids, dtype=np.int64), minlength=n_ids).astype(np.int64)


def char_encode(text, vocab, unknown="unk"):
    """(ids (T,), counts (V + 1,)) of text (spec entry point); counts[V] counts unknowns."""
    table = char_vocab(vocab)
    ids = np.asarray(encode(as_text("text", text), table, unknown), dtype=np.int64)
    return ids, count_tokens(ids, len(table) + 1)


def char_decode(ids, vocab, unknown_symbol="\ufffd"):
    """text of ids; the unknown id decodes to `unknown_symbol`; other ids are an error."""
    table = char_vocab(vocab)
    chars = list(table) + [unknown_symbol]
    ids = token_ids("ids", ids)
    bad = ids[(ids < 0) | (ids >= len(chars))]
    if bad.size:
        raise InputError(f"ids: {int(bad[0])} is not a character id (must be in [0, {len(chars)}))")
    return "".join(chars[i] for i in ids.tolist())


# --- case generators (specs/char_encode.yaml) ---


def char_case(rng, sample):
    """Inputs of a char_encode case: a sample and the characters of the English and code
    samples as the vocabulary (so Chinese, emoji and accents are unknown)."""
    vocab = "".join(sorted(set(SAMPLES["english"] + SAMPLES["code"])))
    return {"text": sample_text(sample), "vocab": vocab}
