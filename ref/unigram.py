"""Unigram language-model tokenization, SentencePiece style (specs/unigram_encode.yaml).

encode(text) = viterbi(normalize(text)):
  normalize: (identity character map) skip leading spaces and collapse runs of spaces
  (remove_extra_whitespaces), prepend one space (add_dummy_prefix), every space -> "▁", and
  strip trailing "▁" (remove_extra_whitespaces).
  viterbi: the segmentation into vocabulary pieces maximising the sum of piece scores
  (log-probabilities, float32 as a .model stores them). A position that no single-character
  piece covers gets the unknown piece for one character with score min_score - 10. A
  user-defined piece scores len_bytes * max_score - 0.1 with sentencepiece's max_score =
  max(FLT_MIN, normal scores): about -0.1 for log-probabilities. Ties keep the candidate found
  first, i.e. the one whose last piece starts earliest (unigram_model.cc EncodeOptimized
  replaces a node only on a strictly greater score; path scores are float32 sums). With
  split_digits, no piece longer than one character may contain a digit (llmref's reading of
  the trainer flag; sentencepiece never reads it when encoding, and a model it trained with
  split_digits has no such piece).
  Unknowns: with byte_fallback each unknown character becomes its UTF-8 bytes as the pieces
  "<0xXX>"; without it a run of consecutive unknowns is one unknown id.
"""
import math
import struct
from collections import Counter
from functools import lru_cache

import numpy as np

from llmref.dtypes import round_to
from llmref.errors import InputError
from llmref.ref._corpus import CORPUS, sample_text
from llmref.ref._text import as_text, public_text
from llmref.validate import flag, float_array, int_array, integer

SPACE = "\u2581"  # ▁
UNK_PENALTY = 10.0  # unigram_model.cc kUnkPenalty
FLT_MIN, FLT_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
# SentencePiece piece types (sentencepiece_model.proto).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def normalize(text: str, add_dummy_prefix: bool = True, remove_extra_whitespaces: bool = True) -> str:
    """' a  b ' -> '▁a▁b' (defaults); no other character is changed (identity rule).

    As SentencePiece's normalizer.cc: leading spaces are skipped and runs of spaces collapsed
    (remove_extra_whitespaces), one space is prepended to non-empty text (add_dummy_prefix),
    spaces are escaped to ▁, and trailing ▁ are stripped, including ▁ that were in the input.
    """
    if remove_extra_whitespaces:
        text = " ".join(part for part in text.split(" ") if part)
    if text and add_dummy_prefix:
        text = " " + text
    escaped = text.replace(" ", SPACE)
    return escaped.rstrip(SPACE) if remove_extra_whitespaces else escaped


def _f32(x: float) -> float:
    """x rounded to float32 (the IEEE conversion C++ performs when a double is stored in a
    float), as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def viterbi(text: str, pieces: dict, unk_score: float, max_len: int, split_digits: bool) -> list:
    """Best segmentation of `text` as [(start, stop, id or None for unknown)].

    best[e] = max over pieces text[s:e] of best[s] + score; starts are visited in increasing
    order and a candidate replaces best[e] only when strictly greater (earliest start wins ties).
    Arithmetic as sentencepiece's EncodeOptimized (unigram_model.cc): scores and best[] are
    float32 and every candidate best[s] + score is a float32 sum, so two paths whose float32
    totals are equal tie (measured against the sentencepiece library: a float64 candidate
    breaks such ties differently).
    """
    n = len(text)
    best = [-np.inf] * (n + 1)
    back = [None] * (n + 1)  # back[e] = (s, id)
    best[0] = 0.0
    for s in range(n):
        if best[s] == -np.inf:
            continue
        has_single = False
        for e in range(s + 1, min(n, s + max_len) + 1):
            piece = text[s:e]
            if piece not in pieces:
                continue
            if split_digits and e - s > 1 and any(ch in "0123456789" for ch in piece):
                continue
            has_single |= e == s + 1
            piece_id, score = pieces[piece]
            candidate = _f32(best[s] + score)
            if candidate > best[e]:
                best[e], back[e] = candidate, (s, piece_id)
        unknown = _f32(best[s] + unk_score)
        if not has_single and unknown > best[s + 1]:
            best[s + 1], back[s + 1] = unknown, (s, None)
    path, e = [], n
    while e > 0:
        s, piece_id = back[e]
        path.append((s, e, piece_id))
        e = s
    return path[::-1]


class Model:
    """A unigram vocabulary: pieces, float32 scores, types, and the normaliser / trainer flags."""

    def __init__(self, pieces, scores, types, add_dummy_prefix=True, remove_extra_whitespaces=True,
                 byte_fallback=False, split_digits=False):
        if not (len(pieces) == len(scores) == len(types)):
            raise InputError(f"pieces: {len(pieces)} pieces but {len(scores)} scores and {len(types)} types")
        unknown = [i for i, t in enumerate(types) if t == UNKNOWN]
        if len(unknown) != 1:
            raise InputError(f"types: expected exactly one unknown piece (type {UNKNOWN}), got {len(unknown)}")
        self.unk_id = unknown[0]
        self.pieces, self.types = list(pieces), list(types)
        self.scores = round_to(np.asarray(scores, dtype=np.float64), "float32").astype(np.float64).tolist()
        normal = [s for s, t in zip(self.scores, self.types) if t == NORMAL]
        # unigram_model.cc: max_score_ starts at FLT_MIN (the smallest positive normal float),
        # min_score_ at FLT_MAX, both over NORMAL pieces only.
        max_score = max(normal + [FLT_MIN])
        self.unk_score = _f32(min(normal + [FLT_MAX]) - UNK_PENALTY)
        self.lookup = {}  # piece -> (id, score) for the pieces the lattice may use
        for i, (piece, score, kind) in enumerate(zip(self.pieces, self.scores, self.types)):
            if kind == NORMAL:
                self.lookup[piece] = (i, score)
            elif kind == USER_DEFINED:  # length (UTF-8 bytes) * max_score_ in float32, - 0.1
                self.lookup[piece] = (i, _f32(len(piece.encode("utf-8")) * max_score) - 0.1)
        self.max_len = max((len(p) for p in self.lookup), default=1)
        self.byte_id = {int(p[3:5], 16): i for i, (p, t) in enumerate(zip(self.pieces, self.types))
                        if t == BYTE}
        if byte_fallback and len(self.byte_id) != 256:
            raise InputError(f"types: byte_fallback needs 256 byte pieces, the model has {len(self.byte_id)}")
        self.add_dummy_prefix, self.remove_extra_whitespaces = add_dummy_prefix, remove_extra_whitespaces
        self.byte_fallback, self.split_digits = byte_fallback, split_digits

    def encode(self, text: str) -> list:
        """Piece ids of text (no BOS/EOS) under the identity normaliser."""
        text = public_text("text", text)
        return self.encode_normalized(normalize(text, self.add_dummy_prefix, self.remove_extra_whitespaces))

    def encode_normalized(self, normalized: str) -> list:
        """Piece ids of already normalised text: the Viterbi pieces, unknowns as byte pieces
        (byte_fallback) or one unknown id per run."""
        ids = []
        for s, e, piece_id in viterbi(normalized, self.lookup, self.unk_score, self.max_len,
                                      self.split_digits):
            if piece_id is not None:
                ids.append(piece_id)
            elif self.byte_fallback:
                ids.extend(self.byte_id[b] for b in normalized[s:e].encode("utf-8"))
            elif not ids or ids[-1] != self.unk_id:  # a run of unknowns is one unknown
                ids.append(self.unk_id)
        return ids


def unigram_encode(text, pieces, scores, types, add_dummy_prefix=True, remove_extra_whitespaces=True,
                   byte_fallback=False, split_digits=False):
    """ids (T,) int64 (spec entry point); `pieces` is the newline-joined piece list."""
    text = as_text("text", text)
    piece_list = as_text("pieces", pieces).split("\n")
    scores = float_array("scores", scores, ndim=1).astype(np.float64)
    types = int_array("types", types, ndim=1)
    if not np.isin(types, [1, 2, 3, 4, 5, 6]).all():
        raise InputError("types: expected integer piece types in 1..6")
    flags = [flag(name, value) for name, value in (
        ("add_dummy_prefix", add_dummy_prefix), ("remove_extra_whitespaces", remove_extra_whitespaces),
        ("byte_fallback", byte_fallback), ("split_digits", split_digits))]
    model = Model(piece_list, scores.tolist(), types.tolist(), *flags)
    return np.asarray(model.encode(text), dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Training: EM over the segmentation lattice, with loss-based pruning


def _logsumexp(a: float, b: float) -> float:
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    m = max(a, b)
    return m + float(np.log1p(np.exp(-abs(a - b))))


def expected_counts(words: dict, scores: dict, max_len: int) -> tuple:
    """E-step: ({piece: expected count}, log-likelihood) by forward-backward on each word's
    lattice, weighted by the word's count.

    alpha[e] = log sum over segmentations of word[:e]; beta[s] likewise for word[s:];
    the posterior of piece word[s:e] is exp(alpha[s] + score + beta[e] - alpha[n]).
    """
    counts, loglik = dict.fromkeys(scores, 0.0), 0.0
    for word, freq in words.items():
        n = len(word)
        spans = [(s, e) for s in range(n) for e in range(s + 1, min(n, s + max_len) + 1)
                 if word[s:e] in scores]
        alpha = [-np.inf] * (n + 1)
        beta = [-np.inf] * (n + 1)
        alpha[0], beta[n] = 0.0, 0.0
        for s, e in spans:  # spans are ordered by start, so alpha[s] is final when used
            alpha[e] = _logsumexp(alpha[e], alpha[s] + scores[word[s:e]])
        for s, e in reversed(spans):  # reversed: ordered by decreasing start
            beta[s] = _logsumexp(beta[s], scores[word[s:e]] + beta[e])
        if alpha[n] == -np.inf:
            continue  # not segmentable (cannot happen: every character is a seed piece)
        loglik += freq * alpha[n]
        for s, e in spans:
            counts[word[s:e]] += freq * float(np.exp(alpha[s] + scores[word[s:e]] + beta[e] - alpha[n]))
    return counts, loglik


def _normalised_log(counts: dict) -> dict:
    """M-step: score = log(count) - log(total); pieces of zero expected count are removed."""
    log_total = float(np.log(sum(counts.values())))
    return {p: float(np.log(c)) - log_total for p, c in counts.items() if c > 0}


def _best_split(word: str, lookup: dict, max_len: int) -> list:
    """The Viterbi pieces of `word` under lookup {piece: (id, score)}."""
    return [word[s:e] for s, e, _ in viterbi(word, lookup, -np.inf, max_len, False)]


def train(text: str, vocab_size: int, max_piece_len: int = 16, seed_size: int = 2000,
          em_iterations: int = 2, shrink: float = 0.75, split_digits: bool = False) -> dict:
    """{piece: score} of a unigram vocabulary learned from `text` (Kudo 2018, sec. 3.2):

    words = normalised text split before each ▁ (pieces never cross a word boundary);
    seed  = every character, plus the seed_size most frequent substrings of length >= 2
            (ranked by frequency * length, then the piece) - a digit-containing one only
            without split_digits;
    repeat: em_iterations of E-step / M-step; stop when at most vocab_size pieces remain;
            else prune to max(vocab_size, shrink * size) by loss, where loss(p) = (Viterbi
            count of p) * (score(p) - score of p's best split without p); characters are
            never pruned. Ties sort by the piece string.
    """
    normalized = normalize(" ".join(text.split()))
    words = {}
    for word in normalized.split(SPACE):
        if word:
            words[SPACE + word] = words.get(SPACE + word, 0) + 1
    chars = sorted({ch for w in words for ch in w})
    substrings = {}
    for word, freq in words.items():
        for s in range(len(word)):
            for e in range(s + 2, min(len(word), s + max_piece_len) + 1):
                piece = word[s:e]
                if split_digits and any(ch in "0123456789" for ch in piece):
                    continue
                substrings[piece] = substrings.get(piece, 0) + freq
    seeds = sorted(substrings, key=lambda p: (-substrings[p] * len(p), p))[:seed_size]
    freq = {ch: sum(w.count(ch) * n for w, n in words.items()) for ch in chars}
    freq.update({p: substrings[p] for p in seeds})
    scores = _normalised_log(freq)
    while True:
        for _ in range(em_iterations):
            counts, _ = expected_counts(words, scores, max_piece_len)
            # characters are kept, however rare, so every word stays segmentable
            scores = _normalised_log(counts | {ch: max(counts.get(ch, 0.0), 1e-300) for ch in chars})
        if len(scores) <= vocab_size:
            break
        scores = _prune(words, scores, max(vocab_size, int(shrink * len(scores))), chars, max_piece_len)
    return scores


def _prune(words: dict, scores: dict, keep: int, chars: list, max_len: int) -> dict:
    """The `keep` pieces of least loss when removed (characters always kept)."""
    lookup = {p: (0, v) for p, v in scores.items()}
    viterbi_count = dict.fromkeys(scores, 0)
    for word, freq in words.items():
        for piece in _best_split(word, lookup, max_len):
            viterbi_count[piece] += freq
    loss = {}
    for piece, score in scores.items():
        if len(piece) == 1:
            continue
        del lookup[piece]  # the best split of the piece without the piece itself
        alternative = sum(scores[p] for p in _best_split(piece, lookup, max_len))
        lookup[piece] = (0, score)
        loss[piece] = viterbi_count[piece] * (score - alternative)
    ranked = sorted(loss, key=lambda p: (-loss[p], p))[:max(0, keep - len(chars))]
    return {p: scores[p] for p in chars + ranked}


def unigram_train(text, vocab_size=200, split_digits=False):
    """(pieces joined by newlines, scores (V,)) sorted by decreasing score, then piece (spec
    entry point)."""
    text = as_text("text", text)
    scores = train(text, integer("vocab_size", vocab_size, low=1), split_digits=flag("split_digits", split_digits))
    order = sorted(scores, key=lambda p: (-scores[p], p))
    return "\n".join(order), np.asarray([scores[p] for p in order], dtype=np.float64)


# --- case generators (specs/unigram_encode.yaml) ---


@lru_cache(maxsize=2)
def unigram_vocab(byte_pieces: bool = False) -> tuple:
    """(pieces joined by newlines, scores, types) of a unigram vocabulary estimated from
    CORPUS without EM, deterministic: <unk>, <s>, </s>, optionally the 256 byte pieces, then
    every character occurring at least twice in the normalised corpus and every normalised
    word ('▁' + word) occurring at least twice, every character pair occurring at least four
    times that does not end in '▁', plus the digit groups '12', '123', '45'; a
    piece's score is log(count / total count) of its occurrences as a substring."""
    text = normalize(CORPUS.replace("\n", " ").replace("\r", " ").replace("\t", " "))
    chars = Counter(text)
    words = Counter("\u2581" + w for w in text.split("\u2581") if w)
    candidates = sorted({ch for ch, n in chars.items() if n >= 2}
                        | {w for w, n in words.items() if n >= 2 and len(w) > 1}
                        | {p for p, n in Counter(map("".join, zip(text, text[1:]))).items()
                           if n >= 4 and not p.endswith("\u2581")}
                        | {"12", "123", "45"})
    counts = {p: text.count(p) for p in candidates}
    total = sum(counts.values())
    pieces = ["<unk>", "<s>", "</s>"]
    types = [UNKNOWN, CONTROL, CONTROL]
    if byte_pieces:
        pieces += [f"<0x{b:02X}>" for b in range(256)]
        types += [BYTE] * 256
    scores = [0.0] * len(pieces)
    for p in sorted(candidates, key=lambda p: (-counts[p], p)):
        pieces.append(p)
        types.append(NORMAL)
        scores.append(math.log(counts[p] / total))
    return "\n".join(pieces), np.asarray(scores), np.asarray(types, dtype=np.int32)


USER_SYMBOLS = ["<tag>", "\u2581and\u2581I'd"]  # not pieces of the corpus vocabulary


def unigram_case(rng, sample, byte_pieces=0, user_defined=0):
    """Inputs of a unigram_encode case: a sample and the corpus vocabulary, with USER_SYMBOLS
    appended as USER_DEFINED pieces (score 0, unused by the lattice) when user_defined."""
    pieces, scores, types = unigram_vocab(bool(byte_pieces))
    if user_defined:
        pieces = "\n".join([pieces] + USER_SYMBOLS)
        scores = np.concatenate([scores, np.zeros(len(USER_SYMBOLS))])
        types = np.concatenate([types, np.full(len(USER_SYMBOLS), USER_DEFINED, dtype=np.int32)])
    return {"text": sample_text(sample), "pieces": pieces, "scores": scores, "types": types}
