"""Wrong tokenizer variants seen in the wild; each must fail its audit."""
from collections import Counter

import numpy as np
import regex

from llmref.ref import bpe

# ---------------------------------------------------------------------------------------------
# Byte-level BPE


def _encode_with(text, merges, special_tokens, allowed_special, disallowed_special, split, merge):
    """bpe_encode with the pre-tokeniser and the piece merger swapped out."""
    ranks = bpe.ranks_from_merges(merges)
    special = bpe.special_ids(ranks, special_tokens)
    allowed = set(allowed_special)
    if not allowed:
        chunks = [text]
    else:
        splitter = "|".join(regex.escape(n) for n in sorted(allowed, key=lambda n: (-len(n), n)))
        chunks = regex.split(f"({splitter})", text)
    ids = []
    for k, chunk in enumerate(chunks):
        if k % 2:
            ids.append(special[chunk])
        else:
            ids.extend(i for p in split(chunk) for i in merge(p.encode("utf-8"), ranks))
    return np.asarray(ids, dtype=np.int64)


def _merge_most_frequent(piece, ranks):
    """Merges the mergeable adjacent pair that occurs most often in the piece (lowest rank on
    ties): training logic applied at encode time."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        pairs = [(parts[i], parts[i + 1]) for i in range(len(parts) - 1)]
        counts = Counter(p for p in pairs if p[0] + p[1] in ranks)
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], ranks[p[0] + p[1]]))
        i = pairs.index(best)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts]


def bpe_encode_most_frequent_pair(text, merges, pattern="cl100k", special_tokens=(),
                                  allowed_special=(), disallowed_special=("all",)):
    return _encode_with(text, merges, special_tokens, allowed_special, disallowed_special,
                        lambda t: bpe.split_pieces(t, pattern), _merge_most_frequent)


def bpe_encode_gpt2_pattern(text, merges, pattern="cl100k", special_tokens=(),
                            allowed_special=(), disallowed_special=("all",)):
    """Ignores `pattern` and pre-tokenises with GPT-2's regex."""
    return _encode_with(text, merges, special_tokens, allowed_special, disallowed_special,
                        lambda t: bpe.split_pieces(t, "gpt2"), bpe.merge_piece)


_CL100K_CASE_SENSITIVE = bpe.PATTERNS["cl100k"].replace("'(?i:[sdmt]|ll|ve|re)", "'(?:[sdmt]|ll|ve|re)")


def bpe_encode_case_sensitive_contractions(text, merges, pattern="cl100k", special_tokens=(),
                                           allowed_special=(), disallowed_special=("all",)):
    """cl100k with case-sensitive contractions: "I'M" splits as "'" + "M"."""
    return _encode_with(text, merges, special_tokens, allowed_special, disallowed_special,
                        lambda t: regex.findall(_CL100K_CASE_SENSITIVE, t), bpe.merge_piece)


def bpe_decode_ignore_errors(ids, merges, special_tokens=()):
    """Drops invalid UTF-8 instead of replacing it with U+FFFD."""
    ranks = bpe.ranks_from_merges(merges)
    return bpe.decode(ids, ranks, bpe.special_ids(ranks, special_tokens), errors="ignore")


def bpe_train_first_seen_tie_break(text, n_merges, pattern="cl100k"):
    """max() over a dict in first-seen order: equal counts go to the pair seen first."""
    words = Counter(tuple(p.encode("utf-8")) for p in bpe.split_pieces(text, pattern))
    merges = []
    for new_id in range(256, 256 + n_merges):
        counts = bpe.pair_counts(words)
        if not counts:
            break
        pair = max(counts, key=counts.get)
        merges.append(pair)
        words = Counter({bpe.merge_word(w, pair, new_id): n for w, n in words.items()})
    return np.asarray(merges, dtype=np.int64).reshape(-1, 2)


def bpe_train_without_pretokenisation(text, n_merges, pattern="cl100k"):
    """Counts pairs over the whole text, so merges span spaces and punctuation."""
    words = Counter([tuple(text.encode("utf-8"))])
    merges = []
    for new_id in range(256, 256 + n_merges):
        counts = bpe.pair_counts(words)
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges.append(pair)
        words = Counter({bpe.merge_word(w, pair, new_id): n for w, n in words.items()})
    return np.asarray(merges, dtype=np.int64).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------
# WordPiece


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


def _wordpiece_with(text, vocab, lowercase, strip_accents, max_chars, basic, piece=None):
    from llmref.ref import wordpiece

    table = wordpiece.parse_vocab(vocab)
    piece = piece or wordpiece.wordpiece
    ids = [table[p] for w in basic(text, lowercase, strip_accents)
           for p in piece(w, table, "[UNK]", max_chars)]
    return np.asarray(ids, dtype=np.int64)


def wordpiece_partial_pieces(text, vocab, lowercase=True, strip_accents="auto", max_chars=100):
    from llmref.ref.wordpiece import basic_tokenize

    return _wordpiece_with(text, vocab, lowercase, strip_accents, max_chars, basic_tokenize,
                           _wordpiece_partial)


def wordpiece_strip_without_lowercase(text, vocab, lowercase=True, strip_accents="auto",
                                      max_chars=100):
    """Strips accents when asked to lowercase, but never lowercases."""
    from llmref.ref.wordpiece import basic_tokenize

    strip = "strip" if lowercase or strip_accents == "strip" else strip_accents
    return _wordpiece_with(text, vocab, False, strip, max_chars, basic_tokenize)


def wordpiece_cased_strips_accents(text, vocab, lowercase=True, strip_accents="auto",
                                   max_chars=100):
    """strip_accents 'auto' always strips, whatever the casing."""
    from llmref.ref.wordpiece import basic_tokenize

    strip = "strip" if strip_accents == "auto" else strip_accents
    return _wordpiece_with(text, vocab, lowercase, strip, max_chars, basic_tokenize)


def wordpiece_no_cjk_split(text, vocab, lowercase=True, strip_accents="auto", max_chars=100):
    from llmref.ref.wordpiece import basic_tokenize

    basic = lambda t, lc, acc: basic_tokenize(t, lc, acc, split_cjk=False)  # noqa: E731
    return _wordpiece_with(text, vocab, lowercase, strip_accents, max_chars, basic)


# ---------------------------------------------------------------------------------------------
# Character level


def char_encode_utf16_units(text, vocab, unknown="unk"):
    """Splits astral characters into their two surrogates, each unknown."""
    from llmref.ref import char_tokenizer

    table = char_tokenizer.char_vocab(vocab)
    units = text.encode("utf-16-le", "surrogatepass")
    chars = [units[i:i + 2].decode("utf-16-le", "surrogatepass") for i in range(0, len(units), 2)]
    ids = []
    for ch in chars:
        if ch in table:
            ids.append(table[ch])
        elif unknown == "unk":
            ids.append(len(table))
    ids = np.asarray(ids, dtype=np.int64)
    return ids, char_tokenizer.count_tokens(ids, len(table) + 1)


def char_encode_drops_unknown(text, vocab, unknown="unk"):
    from llmref.ref import char_tokenizer

    table = char_tokenizer.char_vocab(vocab)
    ids = np.asarray(char_tokenizer.encode(text, table, "skip"), dtype=np.int64)
    return ids, char_tokenizer.count_tokens(ids, len(table) + 1)


# ---------------------------------------------------------------------------------------------
# Unigram (SentencePiece)


def _unigram_model(pieces, scores, types, **flags):
    from llmref.ref import unigram

    return unigram.Model(pieces.split("\n"), np.asarray(scores).tolist(), np.asarray(types).tolist(),
                         **flags)


def unigram_without_dummy_prefix(text, pieces, scores, types, add_dummy_prefix=True,
                                 remove_extra_whitespaces=True, byte_fallback=False,
                                 split_digits=False):
    model = _unigram_model(pieces, scores, types, add_dummy_prefix=False,
                           remove_extra_whitespaces=remove_extra_whitespaces,
                           byte_fallback=byte_fallback, split_digits=split_digits)
    return np.asarray(model.encode(text), dtype=np.int64)


def unigram_ignores_split_digits(text, pieces, scores, types, add_dummy_prefix=True,
                                 remove_extra_whitespaces=True, byte_fallback=False,
                                 split_digits=False):
    model = _unigram_model(pieces, scores, types, add_dummy_prefix=add_dummy_prefix,
                           remove_extra_whitespaces=remove_extra_whitespaces,
                           byte_fallback=byte_fallback, split_digits=False)
    return np.asarray(model.encode(text), dtype=np.int64)


def unigram_unknown_per_character(text, pieces, scores, types, add_dummy_prefix=True,
                                  remove_extra_whitespaces=True, byte_fallback=False,
                                  split_digits=False):
    from llmref.ref import unigram

    model = _unigram_model(pieces, scores, types, add_dummy_prefix=add_dummy_prefix,
                           remove_extra_whitespaces=remove_extra_whitespaces,
                           byte_fallback=byte_fallback, split_digits=split_digits)
    normalized = unigram.normalize(text, add_dummy_prefix, remove_extra_whitespaces)
    path = unigram.viterbi(normalized, model.lookup, model.unk_score, model.max_len, split_digits)
    return np.asarray([model.unk_id if i is None else i for _, _, i in path], dtype=np.int64)
