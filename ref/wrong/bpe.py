"""Wrong byte-level BPE variants seen in the wild (specs/bpe_encode.yaml, bpe_decode.yaml,
bpe_train.yaml); each must fail its audit."""
from collections import Counter

import numpy as np
import regex

from llmref.ref import bpe


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
