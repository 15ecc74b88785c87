"""Unigram language-model tokenization, SentencePiece style (specs/unigram_encode.yaml).

encode(text) = viterbi(normalize(text)):
  normalize: (identity character map) skip leading spaces and collapse runs of spaces
  (remove_extra_whitespaces), prepend one space (add_dummy_prefix), every space -> "▁", and
  strip trailing "▁" (remove_extra_whitespaces).
  viterbi: the segmentation into vocabulary pieces maximising the sum of piece scores
  (log-probabilities). A position that no single-character piece covers gets the unknown
  piece for one character with score min_score - 10. Ties keep the candidate found first,
  i.e. the one whose last piece starts earliest (unigram_model.cc EncodeOptimized replaces a
  node only on a strictly greater score). With split_digits, no piece longer than one
  character may contain a digit.
  Unknowns: with byte_fallback each unknown character becomes its UTF-8 bytes as the pieces
  "<0xXX>"; without it a run of consecutive unknowns is one unknown id.
"""
import struct

import numpy as np

from llmref.errors import InputError
from llmref.ref.bpe import as_text
from llmref.validate import float_array, int_array

SPACE = "\u2581"  # ▁
UNK_PENALTY = 10.0  # unigram_model.cc kUnkPenalty
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


def viterbi(text: str, pieces: dict, unk_score: float, max_len: int, split_digits: bool) -> list:
    """Best segmentation of `text` as [(start, stop, id or None for unknown)].

    best[e] = max over pieces text[s:e] of best[s] + score; starts are visited in increasing
    order and a candidate replaces best[e] only when strictly greater (earliest start wins ties).
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
            if best[s] + score > best[e]:
                best[e], back[e] = best[s] + score, (s, piece_id)
        if not has_single and best[s] + unk_score > best[s + 1]:
            best[s + 1], back[s + 1] = best[s] + unk_score, (s, None)
    path, e = [], n
    while e > 0:
        s, piece_id = back[e]
        path.append((s, e, piece_id))
        e = s
    return path[::-1]


class Model:
    """A unigram vocabulary: pieces, scores, types, and the normaliser / trainer flags."""

    def __init__(self, pieces, scores, types, add_dummy_prefix=True, remove_extra_whitespaces=True,
                 byte_fallback=False, split_digits=False):
        if not (len(pieces) == len(scores) == len(types)):
            raise InputError(f"pieces: {len(pieces)} pieces but {len(scores)} scores and {len(types)} types")
        unknown = [i for i, t in enumerate(types) if t == UNKNOWN]
        if len(unknown) != 1:
            raise InputError(f"types: expected exactly one unknown piece (type {UNKNOWN}), got {len(unknown)}")
        self.unk_id = unknown[0]
        self.pieces, self.scores, self.types = list(pieces), [float(s) for s in scores], list(types)
        normal = [s for s, t in zip(self.scores, self.types) if t == NORMAL]
        max_score = max(normal, default=0.0)
        self.unk_score = min(normal, default=0.0) - UNK_PENALTY
        self.lookup = {}  # piece -> (id, score) for the pieces the lattice may use
        for i, (piece, score, kind) in enumerate(zip(self.pieces, self.scores, self.types)):
            if kind == NORMAL:
                self.lookup[piece] = (i, score)
            elif kind == USER_DEFINED:  # always preferred: length * max_score - 0.1 (bytes)
                self.lookup[piece] = (i, len(piece.encode("utf-8")) * max_score - 0.1)
        self.max_len = max((len(p) for p in self.lookup), default=1)
        self.byte_id = {int(p[3:5], 16): i for i, (p, t) in enumerate(zip(self.pieces, self.types))
                        if t == BYTE}
        if byte_fallback and len(self.byte_id) != 256:
            raise InputError(f"types: byte_fallback needs 256 byte pieces, the model has {len(self.byte_id)}")
        self.add_dummy_prefix, self.remove_extra_whitespaces = add_dummy_prefix, remove_extra_whitespaces
        self.byte_fallback, self.split_digits = byte_fallback, split_digits

    def encode(self, text: str) -> list:
        """Piece ids of text (no BOS/EOS)."""
        normalized = normalize(text, self.add_dummy_prefix, self.remove_extra_whitespaces)
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


# ---------------------------------------------------------------------------------------------
# SentencePiece .model files (protobuf ModelProto), parsed by hand


def _varint(data: bytes, pos: int):
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message; value is an int, bytes or float."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack("<f", data[pos:pos + 4])[0], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")
        yield number, wire, value


# Field numbers of sentencepiece_model.proto used here.
_TRAINER = {3: "model_type", 24: "treat_whitespace_as_suffix", 25: "split_digits", 35: "byte_fallback"}
_NORMALIZER = {1: "name", 3: "add_dummy_prefix", 4: "remove_extra_whitespaces", 5: "escape_whitespaces"}


def parse_model(data: bytes, name: str = "path") -> tuple:
    """ModelProto bytes -> (pieces, scores, types, flags)."""
    pieces, scores, types = [], [], []
    flags = {"model_type": 1, "split_digits": False, "byte_fallback": False,
             "treat_whitespace_as_suffix": False, "name": "nmt_nfkc", "add_dummy_prefix": True,
             "remove_extra_whitespaces": True, "escape_whitespaces": True}
    try:
        for number, wire, value in _fields(data):
            if number == 1 and wire == 2:  # SentencePiece {piece = 1, score = 2, type = 3}
                piece, score, kind = None, 0.0, NORMAL
                for n, _, v in _fields(value):
                    piece = v.decode("utf-8") if n == 1 else piece
                    score = v if n == 2 else score
                    kind = v if n == 3 else kind
                if piece is None:
                    raise ValueError(f"piece {len(pieces)} has no text")
                pieces.append(piece), scores.append(score), types.append(kind)
            elif number in (2, 3) and wire == 2:
                table = _TRAINER if number == 2 else _NORMALIZER
                for n, _, v in _fields(value):
                    if n in table:
                        flags[table[n]] = v.decode("utf-8") if isinstance(v, bytes) else v
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise InputError(f"{name}: not a SentencePiece model ({exc})") from None
    if not pieces:
        raise InputError(f"{name}: not a SentencePiece model (no pieces)")
    return pieces, scores, types, flags


def load_model(path) -> Model:
    """A SentencePiece unigram .model with the identity normaliser -> Model."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InputError(f"path: cannot read {path} ({exc})") from None
    pieces, scores, types, flags = parse_model(data)
    if flags["model_type"] != 1:
        raise InputError(f"path: model_type {flags['model_type']} is not unigram (1)")
    if flags["name"] != "identity" or flags["treat_whitespace_as_suffix"]:
        raise InputError(f"path: normaliser {flags['name']!r} is not supported (identity only)")
    return Model(pieces, scores, types, bool(flags["add_dummy_prefix"]),
                 bool(flags["remove_extra_whitespaces"]), bool(flags["byte_fallback"]),
                 bool(flags["split_digits"]))


def unigram_encode(text, pieces, scores, types, add_dummy_prefix=True, remove_extra_whitespaces=True,
                   byte_fallback=False, split_digits=False):
    """ids (T,) int64 (spec entry point); `pieces` is the newline-joined piece list."""
    text = as_text("text", text)
    piece_list = as_text("pieces", pieces).split("\n")
    scores = float_array("scores", scores, ndim=1).astype(np.float64)
    types = int_array("types", types, ndim=1)
    if not np.isin(types, [1, 2, 3, 4, 5, 6]).all():
        raise InputError("types: expected integer piece types in 1..6")
    for name, flag in (("add_dummy_prefix", add_dummy_prefix), ("remove_extra_whitespaces", remove_extra_whitespaces),
                       ("byte_fallback", byte_fallback), ("split_digits", split_digits)):
        if not isinstance(flag, (bool, np.bool_)):
            raise InputError(f"{name}: expected a bool, got {flag!r}")
    model = Model(piece_list, scores.tolist(), types.tolist(), add_dummy_prefix,
                  remove_extra_whitespaces, byte_fallback, split_digits)
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
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise InputError(f"vocab_size: expected an integer >= 1, got {vocab_size!r}")
    scores = train(text, int(vocab_size), split_digits=bool(split_digits))
    order = sorted(scores, key=lambda p: (-scores[p], p))
    return "\n".join(order), np.asarray([scores[p] for p in order], dtype=np.float64)
