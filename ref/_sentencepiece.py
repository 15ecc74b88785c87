"""SentencePiece .model files as shipped (serves the unigram family and SentencePiece BPE models).

A .model is a protobuf ModelProto (sentencepiece_model.proto), parsed here by hand: pieces
(text, float32 score, type), a TrainerSpec (model_type 1 unigram / 2 BPE, byte_fallback,
treat_whitespace_as_suffix) and a NormalizerSpec (name, precompiled_charsmap, add_dummy_prefix,
remove_extra_whitespaces, escape_whitespaces).

encode(text) = model(normalize(text)), as sentencepiece_processor.cc Encode:
  normalize (normalizer.cc Normalizer::Normalize): the text is consumed prefix by prefix - a
    user-defined symbol (longest match) passes unchanged, else the longest rule of the
    precompiled charsmap rewrites it, else one character passes - while leading spaces are
    skipped and runs collapsed (remove_extra_whitespaces), one space is put first
    (add_dummy_prefix), spaces become ▁ (escape_whitespaces) and trailing ▁ are stripped.
  The charsmap (nmt_nfkc, nmt_nfkc_cf, or a user's rules; empty for 'identity') is a
    darts-clone double-array trie over UTF-8 bytes whose values index NUL-terminated
    replacement strings: blob = uint32 trie size | trie units (uint32, little-endian) | strings.
  model: unigram -> llmref.ref.unigram.Model (Viterbi); BPE -> bpe_pieces below (merge the
    adjacent pair whose concatenation is a piece of HIGHEST score, leftmost on ties; user-defined
    symbols are never merged; an UNUSED result is split back into the pieces it was made of).
  ids: a final piece that is not in the vocabulary is unknown: with byte_fallback its UTF-8
    bytes as <0xXX> pieces, else a run of unknowns is one <unk> id.
"""
import struct

import numpy as np

from llmref.errors import InputError
from llmref.ref import bpe, unigram
from llmref.ref._text import public_text
from llmref.ref.unigram import BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED

SPACE = unigram.SPACE
UNIGRAM, BPE = 1, 2  # TrainerSpec.model_type
_MAX_TRIE_RESULTS = 32  # normalizer.h kMaxTrieResultsSize: rules past the 32nd prefix are unseen


# ---------------------------------------------------------------------------------------------
# Protobuf (wire format) parsing


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
_TRAINER = {3: "model_type", 24: "treat_whitespace_as_suffix", 25: "split_digits",
            35: "byte_fallback", 44: "unk_surface"}
_NORMALIZER = {1: "name", 2: "precompiled_charsmap", 3: "add_dummy_prefix",
               4: "remove_extra_whitespaces", 5: "escape_whitespaces"}


def parse_model(data: bytes, name: str = "path") -> tuple:
    """ModelProto bytes -> (pieces, scores, types, flags); a repeated piece, an empty piece, or
    no pieces at all is an error naming `name`."""
    pieces, scores, types = [], [], []
    flags = {"model_type": UNIGRAM, "split_digits": False, "byte_fallback": False,
             "treat_whitespace_as_suffix": False, "unk_surface": " \u2047 ", "name": "nmt_nfkc",
             "precompiled_charsmap": b"", "add_dummy_prefix": True,
             "remove_extra_whitespaces": True, "escape_whitespaces": True}
    if not data:
        raise InputError(f"{name}: the file is empty, not a SentencePiece model")
    try:
        for number, wire, value in _fields(data):
            if number == 1 and wire == 2:  # SentencePiece {piece = 1, score = 2, type = 3}
                piece, score, kind = None, 0.0, NORMAL
                for n, _, v in _fields(value):
                    piece = v.decode("utf-8") if n == 1 else piece
                    score = v if n == 2 else score
                    kind = v if n == 3 else kind
                if not piece:
                    raise ValueError(f"piece {len(pieces)} has no text")
                pieces.append(piece), scores.append(score), types.append(kind)
            elif number in (2, 3) and wire == 2:
                table = _TRAINER if number == 2 else _NORMALIZER
                for n, _, v in _fields(value):
                    if n in table:
                        text = table[n] in ("name", "unk_surface")
                        flags[table[n]] = v.decode("utf-8") if text else v
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise InputError(f"{name}: not a SentencePiece model ({exc})") from None
    if not pieces:
        raise InputError(f"{name}: not a SentencePiece model (no pieces)")
    seen = {}
    for i, piece in enumerate(pieces):
        if piece in seen:
            raise InputError(f"{name}: piece {piece!r} is defined twice (ids {seen[piece]} and {i})")
        seen[piece] = i
    return pieces, scores, types, flags


# ---------------------------------------------------------------------------------------------
# The normaliser


class CharsMap:
    """A precompiled charsmap: longest-prefix rewriting rules over UTF-8 bytes."""

    def __init__(self, blob: bytes):
        if len(blob) <= 4:
            raise InputError("precompiled_charsmap: the blob is broken (no trie)")
        (size,) = struct.unpack("<I", blob[:4])
        if size >= len(blob) or size % 4:
            raise InputError(f"precompiled_charsmap: trie size {size} exceeds the blob or is not whole units")
        self.units = np.frombuffer(blob[4:4 + size], dtype="<u4").astype(np.int64).tolist()
        self.strings = blob[4 + size:]

    def prefix_rules(self, data: bytes, pos: int) -> list:
        """(length, value) of every rule whose key is a prefix of data[pos:] (darts-clone
        DoubleArray::commonPrefixSearch; unit bits: leaf = bit 8, label = bits 0-7 and 31,
        offset = (unit >> 10) << ((unit & 1 << 9) >> 6), value = the low 31 bits)."""
        units, found = self.units, []
        node = self._offset(units[0])
        for i in range(pos, len(data)):
            node ^= data[i]
            if node >= len(units) or (units[node] & ((1 << 31) | 0xFF)) != data[i]:
                break
            unit = units[node]
            node ^= self._offset(unit)
            if (unit >> 8) & 1:
                found.append((i + 1 - pos, units[node] & ((1 << 31) - 1)))
        return found[:_MAX_TRIE_RESULTS]

    @staticmethod
    def _offset(unit: int) -> int:
        return (unit >> 10) << ((unit & (1 << 9)) >> 6)

    def replacement(self, value: int) -> bytes:
        """The NUL-terminated replacement string at `value`."""
        end = self.strings.find(b"\0", value)
        return self.strings[value:end if end != -1 else len(self.strings)]


class Normalizer:
    """normalizer.cc Normalizer for one NormalizerSpec, with the model's user-defined symbols."""

    def __init__(self, flags: dict, user_defined=()):
        blob = flags["precompiled_charsmap"]
        self.charsmap = CharsMap(blob) if blob else None
        self.user_defined = sorted({s.encode("utf-8") for s in user_defined}, key=len, reverse=True)
        self.add_dummy_prefix = bool(flags["add_dummy_prefix"])
        self.remove_extra_whitespaces = bool(flags["remove_extra_whitespaces"])
        self.escape_whitespaces = bool(flags["escape_whitespaces"])
        self.suffix = bool(flags["treat_whitespace_as_suffix"])

    def prefix(self, data: bytes, pos: int) -> tuple:
        """(normalized bytes, consumed length) at data[pos:] (Normalizer::NormalizePrefix)."""
        for symbol in self.user_defined:  # longest user-defined symbol first, unchanged
            if data.startswith(symbol, pos):
                return symbol, len(symbol)
        rules = self.charsmap.prefix_rules(data, pos) if self.charsmap else []
        if rules:
            length, value = max(rules, key=lambda r: r[0])  # the longest rule
            return self.charsmap.replacement(value), length
        length = _utf8_length(data[pos])
        return data[pos:pos + length], length

    def normalize(self, text: str) -> str:
        data = text.encode("utf-8")
        pos, out = 0, bytearray()
        space = SPACE.encode("utf-8") if self.escape_whitespaces else b" "
        if self.remove_extra_whitespaces:  # skip leading spaces
            while pos < len(data) and (p := self.prefix(data, pos))[0] == b" ":
                pos += p[1]
        if pos == len(data):
            return ""
        if not self.suffix and self.add_dummy_prefix:
            out += space
        is_prev_space = self.remove_extra_whitespaces
        while pos < len(data):
            piece, consumed = self.prefix(data, pos)
            if is_prev_space:
                piece = piece.lstrip(b" ")
            if piece:
                out += piece.replace(b" ", space) if self.escape_whitespaces else piece
                is_prev_space = piece.endswith(b" ")
            pos += consumed
            if not self.remove_extra_whitespaces:
                is_prev_space = False
        if self.remove_extra_whitespaces:
            while out.endswith(space):
                del out[len(out) - len(space):]
        if self.suffix and self.add_dummy_prefix:
            out += space
        return out.decode("utf-8")


def _utf8_length(lead: int) -> int:
    """Bytes of the UTF-8 character that starts with `lead` (input here is valid UTF-8)."""
    return 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


# ---------------------------------------------------------------------------------------------
# BPE models


def bpe_pieces(normalized: str, vocab: dict, scores: list, types: list, user_defined: list) -> list:
    """The final pieces of bpe_model.cc Model::SampleEncode (alpha = 0): symbols are the
    user-defined symbols (longest match, frozen) and single characters; the adjacent pair whose
    concatenation is a piece of the highest score merges first, leftmost on ties (a dense rank
    of the scores is the priority); an UNUSED piece is split back into what it was made of."""
    symbols, pos = [], 0  # (text, frozen)
    while pos < len(normalized):
        symbol = next((s for s in user_defined if normalized.startswith(s, pos)), None)
        symbols.append((symbol, True) if symbol else (normalized[pos], False))
        pos += len(symbols[-1][0])
    distinct = sorted({scores[i] for i in vocab.values()}, reverse=True)
    rank = {score: k for k, score in enumerate(distinct)}
    made_of = {}

    def merge(a, b):
        if a[1] or b[1]:
            return None  # frozen user-defined symbol
        piece = a[0] + b[0]
        i = vocab.get(piece)
        if i is None:
            return None
        if types[i] == UNUSED:
            made_of[piece] = (a[0], b[0])
        return rank[scores[i]], (piece, False)

    out = []

    def resegment(piece):
        if piece in made_of and types[vocab[piece]] == UNUSED:
            for part in made_of[piece]:
                resegment(part)
        else:
            out.append(piece)

    for piece, _ in bpe.merge_adjacent(symbols, merge):
        resegment(piece)
    return out


# ---------------------------------------------------------------------------------------------
# A loaded model


class SentencePiece:
    """A .model as sentencepiece's SentencePieceProcessor encodes and decodes it."""

    def __init__(self, pieces, scores, types, flags, name="path"):
        if flags["model_type"] not in (UNIGRAM, BPE):
            kind = {3: "WORD", 4: "CHAR"}.get(flags["model_type"], flags["model_type"])
            raise InputError(f"{name}: model_type {kind} is not supported (unigram and BPE are)")
        self.pieces, self.types, self.flags = list(pieces), list(types), flags
        self.model_type = flags["model_type"]
        self.byte_fallback = bool(flags["byte_fallback"])
        user_defined = [p for p, t in zip(pieces, types) if t == USER_DEFINED]
        self.normalizer = Normalizer(flags, user_defined)
        self.unigram = unigram.Model(pieces, scores, types, byte_fallback=self.byte_fallback)
        self.scores = self.unigram.scores  # float32 values, as stored
        self.unk_id = self.unigram.unk_id
        self.user_defined = sorted(user_defined, key=len, reverse=True)
        self.vocab = {p: i for i, (p, t) in enumerate(zip(pieces, types)) if t in (NORMAL, USER_DEFINED, UNUSED)}
        self.reserved = {p: i for i, (p, t) in enumerate(zip(pieces, types)) if t not in (NORMAL, USER_DEFINED, UNUSED)}

    def encode(self, text: str) -> list:
        """Piece ids of text (no BOS/EOS); a lone surrogate is an error, as sentencepiece's."""
        normalized = self.normalizer.normalize(public_text("text", text))
        if self.model_type == UNIGRAM:
            return self.unigram.encode_normalized(normalized)
        ids = []
        for piece in bpe_pieces(normalized, self.vocab, self.scores, self.types, self.user_defined):
            i = self.reserved.get(piece, self.vocab.get(piece, self.unk_id))  # PieceToId
            if i != self.unk_id:
                ids.append(i)
            elif self.byte_fallback:
                ids.extend(self.unigram.byte_id[b] for b in piece.encode("utf-8"))
            elif not ids or ids[-1] != self.unk_id:  # a run of unknowns is one unknown
                ids.append(i)
        return ids

    def has_id(self, i: int) -> bool:
        return 0 <= i < len(self.pieces)

    def special_id(self, piece: str) -> int:
        """The id of a control or unknown piece (the special tokens of a .model)."""
        return self.reserved[piece]

    def decode_bytes(self, ids) -> bytes:
        """The bytes ids decode to (sentencepiece_processor.cc Decode): control pieces give
        nothing, the unknown piece its surface (' ⁇ '), a byte piece its byte, any other piece
        its text with ▁ as spaces; while nothing has been written, a leading ▁ is dropped from
        the piece (under add_dummy_prefix or remove_extra_whitespaces; with
        remove_extra_whitespaces from every such piece, else from the first only)."""
        out, is_bos_ws, bos_ws_seen = bytearray(), True, False
        strip = self.flags["add_dummy_prefix"] or self.flags["remove_extra_whitespaces"]
        for i in ids:
            kind, piece = self.types[i], self.pieces[i]
            if kind == BYTE:
                out.append(int(piece[3:5], 16))
                continue
            if bos_ws_seen or out:
                is_bos_ws = False
            bos_ws_seen = False
            if kind == CONTROL:
                continue
            if kind == UNKNOWN:
                out += self.flags["unk_surface"].encode("utf-8")
                continue
            if is_bos_ws and strip and piece.startswith(SPACE):
                piece = piece[1:]
                bos_ws_seen = not self.flags["remove_extra_whitespaces"]
            out += piece.replace(SPACE, " ").encode("utf-8")
        return bytes(out)


def load(path) -> SentencePiece:
    """A SentencePiece .model file (unigram or BPE, any normaliser) -> SentencePiece."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InputError(f"path: cannot read {path} ({exc.strerror or exc})") from None
    pieces, scores, types, flags = parse_model(data)
    return SentencePiece(pieces, scores, types, flags)
