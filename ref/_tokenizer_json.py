"""tokenizer.json files of the tokenizers library (serves the bpe and wordpiece families).

encode(text), as tokenizers' Tokenizer.encode (tokenizer/mod.rs, tokenizer/added_vocabulary.rs):
  1. added tokens with normalized=false are cut out of the raw text (leftmost, longest first;
     lstrip / rstrip widen a match over the whitespace beside it; single_word keeps only matches
     not inside a word);
  2. the normalizer runs on each remaining segment, and added tokens with normalized=true are
     cut out of the result;
  3. the pre-tokenizer splits each remaining segment into words (a Sequence applies each
     pre-tokenizer to every word the previous one made);
  4. the model encodes each word: BPE merges the adjacent pair of lowest merge rank (the
     merge's line in `merges`, NOT the id of the token it makes), leftmost on ties, starting
     from characters - bytes mapped to characters by bytes_to_unicode under ByteLevel, the
     file's own characters otherwise (with byte_fallback an unknown character becomes its
     <0xXX> byte tokens, else [unk], runs fused with fuse_unk); ignore_merges emits a word
     that is itself a token directly. WordPiece runs llmref.ref.wordpiece in mode 'hf'.
Supported: normalizers NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Prepend,
  Replace, Sequence, BertNormalizer (WordPiece); pre-tokenizers ByteLevel, Split, Metaspace,
  Digits, Sequence, BertPreTokenizer (WordPiece); decoders ByteLevel, Metaspace, Replace,
  ByteFallback, Fuse, Strip, Sequence. Anything else is an InputError naming the component.
The regular expressions of Split and ByteLevel run on Python's `regex` (tokenizers uses
Oniguruma); the common models' patterns mean the same in both.
"""
import json
import unicodedata

import regex

from llmref.errors import InputError
from llmref.ref import bpe, wordpiece
from llmref.ref._text import public_text

# ByteLevel's regex (pre_tokenizers/byte_level.rs): GPT-2's original pattern.
BYTE_LEVEL_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
TO_CHAR = bpe.bytes_to_unicode()
TO_BYTE = {c: b for b, c in TO_CHAR.items()}
WHITE_SPACE = wordpiece.WHITE_SPACE


class Segment:
    """A piece of text on its way through the pipeline; `start` says whether it begins at
    offset 0 of the original text (Metaspace prepend_scheme 'first' needs it)."""

    def __init__(self, text: str, start: bool):
        self.text, self.start = text, start


# ---------------------------------------------------------------------------------------------
# Splitting with a pattern (tokenizer/normalizer.rs NormalizedString::split)


def split(text: str, matches: list, behavior: str, invert: bool = False) -> list:
    """text split at matches [(start, stop)] with a SplitDelimiterBehavior; empty pieces drop."""
    spans, prev = [], 0  # (start, stop, is_match) covering text
    for start, stop in matches:
        if prev != start:
            spans.append((prev, start, False))
        spans.append((start, stop, True))
        prev = stop
    if prev != len(text) or not spans:
        spans.append((prev, len(text), False))
    if invert:
        spans = [(a, b, not m) for a, b, m in spans]
    pieces = []
    if behavior == "Isolated":
        pieces = [(a, b) for a, b, _ in spans]
    elif behavior == "Removed":
        pieces = [(a, b) for a, b, m in spans if not m]
    elif behavior in ("Contiguous", "MergedWithPrevious"):
        previous = False
        for a, b, m in spans:
            joins = (m == previous) if behavior == "Contiguous" else (m and not previous)
            if joins and pieces:
                pieces[-1] = (pieces[-1][0], b)
            else:
                pieces.append((a, b))
            previous = m
    elif behavior == "MergedWithNext":
        previous = False
        for a, b, m in reversed(spans):
            if m and not previous and pieces:
                pieces[-1] = (a, pieces[-1][1])
            else:
                pieces.append((a, b))
            previous = m
        pieces.reverse()
    else:
        raise InputError(f"path: Split behavior {behavior!r} is not supported")
    return [text[a:b] for a, b in pieces if b > a]


def _regex_matches(pattern, text: str) -> list:
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def _char_matches(test, text: str) -> list:
    return [(k, k + 1) for k, ch in enumerate(text) if test(ch)]


def _pattern(spec: dict, where: str):
    """A Split / Replace pattern {String: s} or {Regex: r} as a compiled regex."""
    if "String" in spec:
        return regex.compile(regex.escape(spec["String"]))
    if "Regex" in spec:
        try:
            return regex.compile(spec["Regex"])
        except regex.error as exc:
            raise InputError(f"path: {where} pattern {spec['Regex']!r} does not compile ({exc})") from None
    raise InputError(f"path: {where} pattern {spec!r} is neither String nor Regex")


# ---------------------------------------------------------------------------------------------
# Normalizers


def _is_combining_mark(ch: str) -> bool:
    return unicodedata.category(ch) in ("Mn", "Mc", "Me")


def normalizer(spec):
    """A str -> str function for one normalizer spec (None: identity)."""
    if spec is None:
        return lambda text: text
    kind = spec.get("type")
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return lambda text: unicodedata.normalize(kind, text)
    if kind == "Lowercase":
        return lambda text: "".join(ch.lower() for ch in text)  # per character, as Rust
    if kind == "Strip":
        left, right = spec.get("strip_left", True), spec.get("strip_right", True)
        return lambda text: _strip(text, left, right)
    if kind == "StripAccents":
        return lambda text: "".join(ch for ch in text if not _is_combining_mark(ch))
    if kind == "Prepend":
        return lambda text: spec["prepend"] + text if text else text
    if kind == "Replace":
        pattern, content = _pattern(spec["pattern"], "Replace"), spec["content"]
        return lambda text: pattern.sub(lambda _: content, text)
    if kind == "Sequence":
        steps = [normalizer(s) for s in spec["normalizers"]]

        def run(text):
            for step in steps:
                text = step(text)
            return text
        return run
    if kind == "BertNormalizer":
        lowercase, accents = spec.get("lowercase", True), spec.get("strip_accents")
        accents = "auto" if accents is None else ("strip" if accents else "keep")
        return lambda text: wordpiece.hf_normalize(text, lowercase, accents, spec.get("clean_text", True),
                                                   spec.get("handle_chinese_chars", True))
    raise InputError(f"path: normalizer {kind!r} is not supported")


def _strip(text: str, left: bool, right: bool) -> str:
    start, stop = 0, len(text)
    while left and start < stop and ord(text[start]) in WHITE_SPACE:
        start += 1
    while right and stop > start and ord(text[stop - 1]) in WHITE_SPACE:
        stop -= 1
    return text[start:stop]


# ---------------------------------------------------------------------------------------------
# Pre-tokenizers: each maps a list of Segments to a list of Segments


def pre_tokenizer(spec):
    if spec is None:
        return lambda segments: segments
    kind = spec.get("type")
    if kind == "Sequence":
        steps = [pre_tokenizer(s) for s in spec["pretokenizers"]]

        def run(segments):
            for step in steps:
                segments = step(segments)
            return segments
        return run
    if kind == "ByteLevel":
        return _byte_level(spec.get("add_prefix_space", True), spec.get("use_regex", True))
    if kind == "Split":
        pattern = _pattern(spec["pattern"], "Split")
        behavior, invert = spec["behavior"], spec.get("invert", False)
        return _each(lambda text: split(text, _regex_matches(pattern, text), behavior, invert))
    if kind == "Metaspace":
        return _metaspace(spec.get("replacement", "\u2581"), spec.get("prepend_scheme", "always"),
                          spec.get("split", True))
    if kind == "Digits":
        behavior = "Isolated" if spec.get("individual_digits", False) else "Contiguous"
        numeric = lambda ch: unicodedata.category(ch) in ("Nd", "Nl", "No")  # noqa: E731
        return _each(lambda text: split(text, _char_matches(numeric, text), behavior))
    if kind == "BertPreTokenizer":
        return _each(wordpiece.hf_pre_tokenize)
    raise InputError(f"path: pre_tokenizer {kind!r} is not supported")


def _each(fn):
    """A pre-tokenizer that splits every segment's text with fn; the first piece keeps the
    segment's start flag."""
    def run(segments):
        return [Segment(piece, seg.start and k == 0) for seg in segments for k, piece in enumerate(fn(seg.text))]
    return run


def _byte_level(add_prefix_space: bool, use_regex: bool):
    """pre_tokenizers/byte_level.rs: a space before every segment that lacks one, GPT-2's
    regex split (use_regex), then every byte of every word as its bytes_to_unicode char."""
    pattern = regex.compile(BYTE_LEVEL_PATTERN)

    def run(segments):
        out = []
        for seg in segments:
            text = seg.text if not add_prefix_space or seg.text.startswith(" ") else " " + seg.text
            pieces = split(text, _regex_matches(pattern, text), "Isolated") if use_regex else [text]
            out += [Segment("".join(TO_CHAR[b] for b in p.encode("utf-8")), seg.start and k == 0)
                    for k, p in enumerate(pieces)]
        return out
    return run


def _metaspace(replacement: str, scheme: str, split_words: bool):
    """pre_tokenizers/metaspace.rs: spaces -> replacement, which is prepended ('always'; 'first'
    only to a segment at the start of the text) unless the segment starts with it; with split,
    each replacement starts a new word."""
    if scheme not in ("always", "first", "never"):
        raise InputError(f"path: Metaspace prepend_scheme {scheme!r} is not supported")

    def run(segments):
        out = []
        for seg in segments:
            text = seg.text.replace(" ", replacement)
            if not text.startswith(replacement) and (scheme == "always" or (scheme == "first" and seg.start)):
                text = replacement + text
            pieces = split(text, _char_matches(lambda ch: ch == replacement, text), "MergedWithNext") if split_words else [text]
            out += [Segment(p, seg.start and k == 0) for k, p in enumerate(pieces)]
        return out
    return run


# ---------------------------------------------------------------------------------------------
# Models


class BPEModel:
    """models/bpe/model.rs: vocab, merges {(left id, right id): (rank, new id)}, byte fallback."""

    def __init__(self, spec: dict):
        for key in ("dropout",):
            if spec.get(key) not in (None, 0, 0.0):
                raise InputError(f"path: BPE {key}={spec[key]!r} is not supported (encoding would be random)")
        self.vocab = _vocab(spec.get("vocab"), "model.vocab")
        self.unk = spec.get("unk_token")
        if self.unk is not None and self.unk not in self.vocab:
            raise InputError(f"path: model.unk_token {self.unk!r} is not in the vocabulary")
        self.byte_fallback, self.fuse_unk = bool(spec.get("byte_fallback")), bool(spec.get("fuse_unk"))
        self.ignore_merges = bool(spec.get("ignore_merges"))
        self.prefix = spec.get("continuing_subword_prefix") or ""
        self.suffix = spec.get("end_of_word_suffix") or ""
        self.merges = {}
        for rank, merge in enumerate(spec.get("merges") or []):
            a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
            new = a + b[len(self.prefix):] if self.prefix and b.startswith(self.prefix) else a + b
            for token in (a, b, new):
                if token not in self.vocab:
                    raise InputError(f"path: merge {rank} ({a!r}, {b!r}) uses {token!r}, which is not in the vocabulary")
            pair = (self.vocab[a], self.vocab[b])
            if pair in self.merges:
                raise InputError(f"path: merge {rank} ({a!r}, {b!r}) repeats merge {self.merges[pair][0]}")
            self.merges[pair] = (rank, self.vocab[new])

    def encode_word(self, word: str) -> list:
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        symbols, unk = [], None  # unk: (id, pending) of a run of unknown characters
        for k, ch in enumerate(word):
            s = (self.prefix if k else "") + ch + (self.suffix if k == len(word) - 1 else "")
            if s in self.vocab:
                if unk is not None:
                    symbols.append(unk)
                    unk = None
                symbols.append(self.vocab[s])
                continue
            if self.byte_fallback:
                codes = [f"<0x{b:02X}>" for b in s.encode("utf-8")]
                if all(c in self.vocab for c in codes):
                    symbols += [self.vocab[c] for c in codes]
                    continue
            if self.unk is not None:
                if unk is not None and not self.fuse_unk:
                    symbols.append(unk)
                unk = self.vocab[self.unk]
        if unk is not None:
            symbols.append(unk)
        return bpe.merge_adjacent(symbols, lambda a, b: self.merges.get((a, b)))


class WordPieceModel:
    """models/wordpiece/mod.rs: greedy longest-match-first (llmref.ref.wordpiece.wordpiece)."""

    def __init__(self, spec: dict):
        self.vocab = _vocab(spec.get("vocab"), "model.vocab")
        self.unk = spec.get("unk_token", "[UNK]")
        if self.unk not in self.vocab:
            raise InputError(f"path: model.unk_token {self.unk!r} is not in the vocabulary")
        self.prefix = spec.get("continuing_subword_prefix", "##")
        self.max_chars = int(spec.get("max_input_chars_per_word", 100))

    def encode_word(self, word: str) -> list:
        return [self.vocab[p] for p in wordpiece.wordpiece(word, self.vocab, self.unk, self.max_chars, self.prefix)]


def _vocab(vocab, where: str) -> dict:
    """{token: id} with distinct non-negative ids."""
    if not isinstance(vocab, dict) or not vocab:
        raise InputError(f"path: {where} is missing or empty")
    seen = {}
    for token, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise InputError(f"path: {where} gives {token!r} the id {i!r}, not an integer >= 0")
        if i in seen:
            raise InputError(f"path: {where} gives id {i} to both {seen[i]!r} and {token!r}")
        seen[i] = token
    return dict(vocab)


# ---------------------------------------------------------------------------------------------
# Decoders: each maps a list of token byte strings to a list of byte strings


def decoder(spec):
    if spec is None:
        return lambda tokens: [b" ".join(tokens)]
    kind = spec.get("type")
    if kind == "Sequence":
        steps = [decoder(s) for s in spec["decoders"]]

        def run(tokens):
            for step in steps:
                tokens = step(tokens)
            return tokens
        return run
    if kind == "ByteLevel":
        def byte_level(tokens):
            out = []
            for t in tokens:
                text = t.decode("utf-8", "surrogatepass")
                out.append(bytes(TO_BYTE[c] for c in text) if all(c in TO_BYTE for c in text) else t)
            return out
        return byte_level
    if kind == "Replace":
        pattern = spec["pattern"]
        if "String" not in pattern:
            raise InputError("path: decoder Replace with a Regex pattern is not supported")
        old, new = pattern["String"].encode("utf-8"), spec["content"].encode("utf-8")
        return lambda tokens: [t.replace(old, new) for t in tokens]
    if kind == "ByteFallback":
        def byte_fallback(tokens):
            return [bytes([int(t[3:5], 16)]) if len(t) == 6 and t.startswith(b"<0x") and t.endswith(b">") else t
                    for t in tokens]
        return byte_fallback
    if kind == "Fuse":
        return lambda tokens: [b"".join(tokens)]
    if kind == "Strip":
        content, start, stop = spec["content"].encode("utf-8"), spec.get("start", 0), spec.get("stop", 0)
        return lambda tokens: [_strip_bytes(t, content, start, stop) for t in tokens]
    if kind == "Metaspace":
        replacement = spec.get("replacement", "\u2581").encode("utf-8")
        first = spec.get("prepend_scheme", "always") != "never"
        return lambda tokens: [t.replace(replacement, b"" if k == 0 and first else b" ")
                               for k, t in enumerate(tokens)]
    if kind == "WordPiece":
        prefix = spec.get("prefix", "##").encode("utf-8")
        return lambda tokens: [(t[len(prefix):] if t.startswith(prefix) else (b" " + t if k else t))
                               for k, t in enumerate(tokens)]
    raise InputError(f"path: decoder {kind!r} is not supported")


def _strip_bytes(token: bytes, content: bytes, start: int, stop: int) -> bytes:
    for _ in range(start):
        if not token.startswith(content):
            break
        token = token[len(content):]
    for _ in range(stop):
        if not token.endswith(content):
            break
        token = token[:-len(content)]
    return token


# ---------------------------------------------------------------------------------------------
# A loaded tokenizer.json


class AddedToken:
    def __init__(self, spec: dict):
        self.content, self.id = spec["content"], int(spec["id"])
        self.special, self.normalized = bool(spec.get("special")), bool(spec.get("normalized", not spec.get("special")))
        self.lstrip, self.rstrip = bool(spec.get("lstrip")), bool(spec.get("rstrip"))
        self.single_word = bool(spec.get("single_word"))


class TokenizerJson:
    """A tokenizer.json as the tokenizers library encodes and decodes it."""

    def __init__(self, data: dict):
        model = data.get("model") or {}
        kind = model.get("type", "BPE" if "merges" in model else None)
        if kind == "BPE":
            self.model = BPEModel(model)
        elif kind == "WordPiece":
            self.model = WordPieceModel(model)
        else:
            raise InputError(f"path: model type {kind!r} is not supported (BPE and WordPiece are)")
        self.kind = kind
        self.normalize = normalizer(data.get("normalizer"))
        self.pre_tokenize = pre_tokenizer(data.get("pre_tokenizer"))
        self.decode_chain = decoder(data.get("decoder"))
        self.byte_level = _has_type(data.get("pre_tokenizer"), "ByteLevel")
        self.added = [AddedToken(t) for t in data.get("added_tokens") or []]
        self.vocab = dict(self.model.vocab)
        for token in self.added:
            self.vocab.setdefault(token.content, token.id)
        self.token_of = {i: t for t, i in self.model.vocab.items()}
        self.token_of.update({t.id: t.content for t in self.added})
        self.added_ids = {t.id for t in self.added}
        self.special = {t.content: t.id for t in self.added if t.special}

    # -- encoding

    def encode(self, text: str, allowed_special=frozenset()) -> list:
        """ids of text; non-special added tokens are always cut out, special ones only when in
        allowed_special. A lone surrogate is an error, as the tokenizers library's."""
        text = public_text("text", text)
        usable = [t for t in self.added if not t.special or t.content in allowed_special]
        raw = {t.content: t for t in usable if not t.normalized}
        normalized = {self.normalize(t.content): t for t in usable if t.normalized}
        ids = []
        for seg, token in _cut(Segment(text, True), raw):
            if token is not None:
                ids.append(token.id)
                continue
            for sub, token2 in _cut(Segment(self.normalize(seg.text), seg.start), normalized):
                if token2 is not None:
                    ids.append(token2.id)
                elif sub.text:
                    for word in self.pre_tokenize([sub]):
                        ids += self.model.encode_word(word.text)
        return ids

    # -- decoding

    def has_id(self, i: int) -> bool:
        return i in self.token_of

    def decode_bytes(self, ids) -> bytes:
        """The decoder chain over the ids' token strings (added tokens as their content)."""
        tokens = [self.token_of[int(i)].encode("utf-8") for i in ids]
        return b"".join(self.decode_chain(tokens)) if tokens else b""


def _has_type(spec, kind: str) -> bool:
    if not spec:
        return False
    if spec.get("type") == kind:
        return True
    return any(_has_type(s, kind) for s in spec.get("pretokenizers", []))


def _cut(segment: Segment, tokens: dict) -> list:
    """[(Segment, None) | (None-text Segment, AddedToken)] covering segment.text: the added
    tokens found leftmost, longest first (added_vocabulary.rs find_matches)."""
    if not tokens or not segment.text:
        return [(segment, None)]
    text = segment.text
    pattern = regex.compile("|".join(regex.escape(c) for c in sorted(tokens, key=lambda c: (-len(c), c)) if c))
    out, offset = [], 0
    for m in pattern.finditer(text):
        token, start, stop = tokens[m.group()], m.start(), m.end()
        if start < offset:
            continue  # inside a previous match widened by rstrip
        if token.single_word and ((start > 0 and regex.match(r"\w", text[start - 1]))
                                  or (stop < len(text) and regex.match(r"\w", text[stop]))):
            continue
        if token.lstrip:
            while start > offset and ord(text[start - 1]) in WHITE_SPACE:
                start -= 1
        if token.rstrip:
            while stop < len(text) and ord(text[stop]) in WHITE_SPACE:
                stop += 1
        if offset < start:
            out.append((Segment(text[offset:start], segment.start and offset == 0), None))
        out.append((None, token))
        offset = stop
    if offset < len(text):
        out.append((Segment(text[offset:], segment.start and offset == 0), None))
    return out


def load(path) -> TokenizerJson:
    """A tokenizer.json file -> TokenizerJson; an unreadable, empty or malformed file, or a
    component llmref does not implement, is an InputError naming `path`."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise InputError(f"path: cannot read {path} ({exc.strerror or exc})") from None
    if not raw.strip():
        raise InputError(f"path: {path} is empty")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise InputError(f"path: {path} starts with a UTF-8 byte-order mark (U+FEFF)")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"path: {path} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"path: {path} is not a tokenizer.json object")
    try:
        return TokenizerJson(data)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"path: {path} is not a tokenizer.json the tokenizers library writes ({exc!r})") from None
