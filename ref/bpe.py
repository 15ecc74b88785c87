"""Byte-level BPE, GPT-2 / tiktoken style (specs/bpe_encode.yaml, bpe_decode.yaml, bpe_train.yaml).

A vocabulary is `ranks`: token bytes -> id. Ids 0..255 are the single bytes; a merge list
[(a, b), ...] adds token 256 + i = bytes(a) + bytes(b) for merge i, so a token's id is also its
merge rank (lower = learned earlier). Special tokens take the ids after the vocabulary.

Encoding, per tiktoken (src/lib.rs `byte_pair_encode`, `_educational.py`):
  1. special tokens that are allowed are cut out of the text and emitted as their ids;
  2. the rest is pre-tokenised by a regex into pieces (never merged across);
  3. a piece that is itself a token is emitted as that token; otherwise it starts as its bytes
     and the adjacent pair whose concatenation has the LOWEST rank is merged, leftmost on ties,
     until no adjacent concatenation is a token.
Decoding concatenates token bytes and decodes UTF-8 with errors='replace' (like tiktoken's
`decode`): a byte sequence that is not valid UTF-8 becomes U+FFFD per maximal invalid subpart.
"""
import json
from collections import Counter

import numpy as np
import regex

from llmref.errors import InputError
from llmref.validate import int_array

# tiktoken_ext/openai_public.py. GPT-2's contractions are case-sensitive; cl100k's are not
# ("(?i:...)"), and cl100k splits digits into groups of at most three.
PATTERNS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k": "|".join([
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]),
}


# ---------------------------------------------------------------------------------------------
# Byte <-> unicode table (GPT-2 encoder.py), used by vocab.json / tokenizer.json files


def bytes_to_unicode() -> dict:
    """byte -> printable char: the 188 printable Latin-1 bytes map to themselves, the other 68
    (control, space, 0x7F-0xA0, 0xAD) to U+0100, U+0101, ... in increasing byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table, n = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return dict(sorted(table.items()))


# ---------------------------------------------------------------------------------------------
# Vocabulary construction and loading


def ranks_from_merges(merges) -> dict:
    """{token bytes: id}: bytes 0..255, then token 256 + i = bytes(a) + bytes(b) for merge i."""
    merges = int_array("merges", merges)
    if merges.size and (merges.ndim != 2 or merges.shape[1] != 2):
        raise InputError(f"merges: expected shape (M, 2), got {merges.shape}")
    vocab = [bytes([b]) for b in range(256)]
    for i, (a, b) in enumerate(merges.reshape(-1, 2).tolist()):
        if not (0 <= a < len(vocab) and 0 <= b < len(vocab)):
            raise InputError(f"merges: row {i} = ({a}, {b}) refers to a token not yet defined "
                             f"(ids must be < {len(vocab)})")
        vocab.append(vocab[a] + vocab[b])
    ranks = {}
    for rank, token in enumerate(vocab):
        if token in ranks:
            raise InputError(f"merges: row {rank - 256} recreates an existing token {token!r}")
        ranks[token] = rank
    return ranks


def special_ids(ranks: dict, special_tokens) -> dict:
    """{special text: id}, ids following the vocabulary in the given order (or a given
    {text: id} mapping). Names are distinct, non-empty strings."""
    if not isinstance(special_tokens, (list, tuple, dict)):
        raise InputError(f"special_tokens: expected a list of names, got {special_tokens!r}")
    names = list(special_tokens)
    for k, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise InputError(f"special_tokens: entry {k} is {name!r}, not a non-empty string")
        if name in names[:k]:
            raise InputError(f"special_tokens: {name!r} is listed twice")
    if isinstance(special_tokens, dict):
        return dict(special_tokens)
    return {name: len(ranks) + i for i, name in enumerate(names)}


def byte_level(ranks: dict) -> dict:
    """`ranks` itself, after checking that every single byte is a token (byte-level BPE
    encodes any text only then)."""
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise InputError(f"ranks: byte {missing[0]:#04x} is not a token; byte-level BPE needs all 256")
    return ranks


def load_tiktoken(path) -> dict:
    """A .tiktoken file: one 'base64(token bytes) rank' per line -> {bytes: rank}."""
    import base64
    import binascii

    ranks = {}
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 2:
                    raise ValueError("expected 'base64 rank'")
                ranks[base64.b64decode(parts[0], validate=True)] = int(parts[1])
            except (ValueError, binascii.Error) as exc:
                raise InputError(f"path: line {number} of {path} is malformed ({exc})") from None
    if len(set(ranks.values())) != len(ranks):
        raise InputError(f"path: {path} assigns one rank to several tokens")
    return ranks


def load_tokenizer_json(path) -> tuple:
    """A tokenizers `tokenizer.json` with a byte-level BPE model -> (ranks, special tokens).

    The model's vocab maps byte-level strings (bytes_to_unicode) to ids; the ids are the ranks.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        model = data["model"]
        if model.get("type", "BPE") != "BPE":
            raise ValueError(f"model type is {model.get('type')!r}, not BPE")
        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        ranks = {bytes(byte_of[c] for c in token): int(i) for token, i in model["vocab"].items()}
        specials = {t["content"]: int(t["id"]) for t in data.get("added_tokens", [])
                    if t.get("special")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"path: {path} is not a byte-level BPE tokenizer.json ({exc!r})") from None
    return ranks, specials


def merges_from_ranks(ranks: dict) -> list:
    """[(left bytes, right bytes)] in rank order: for each multi-byte token, the last merge that
    lowest-rank merging performs when only lower-ranked tokens exist (how a ranks file is
    turned back into a merge list, e.g. for a tokenizers BPE model)."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            known = [(ranks[parts[i] + parts[i + 1]], i) for i in range(len(parts) - 1)
                     if ranks.get(parts[i] + parts[i + 1], rank) < rank]
            if not known:
                break
            _, i = min(known)
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) != 2 or parts[0] not in ranks or parts[1] not in ranks:
            raise InputError(f"ranks: token {token!r} (rank {rank}) is not a merge of two "
                             f"lower-ranked tokens")
        merges.append((parts[0], parts[1]))
    return merges


# ---------------------------------------------------------------------------------------------
# Encoding


def pattern_regex(pattern: str) -> str:
    """The regular expression of a named pre-tokenisation pattern."""
    if not isinstance(pattern, str) or pattern not in PATTERNS:
        raise InputError(f"pattern: unknown pre-tokenisation pattern {pattern!r} "
                         f"(known: {sorted(PATTERNS)})")
    return PATTERNS[pattern]


def split_pieces(text: str, pattern: str = "cl100k") -> list:
    """The regex pre-tokenisation: the matches of the pattern, in order, covering `text`."""
    return regex.findall(pattern_regex(pattern), text)


def merge_piece(piece: bytes, ranks: dict) -> list:
    """Token ids of one pre-tokenised piece by lowest-rank merging (minbpe / tiktoken).

    Invariant: `parts` always concatenates to `piece` and every part is a token. Each step
    merges the adjacent pair whose concatenation has the lowest rank (leftmost on ties).
    """
    if piece in ranks:  # tiktoken emits a whole-piece token directly
        return [ranks[piece]]
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        pair_ranks = [ranks.get(parts[i] + parts[i + 1]) for i in range(len(parts) - 1)]
        known = [(r, i) for i, r in enumerate(pair_ranks) if r is not None]
        if not known:
            break
        _, i = min(known)  # lowest rank; the leftmost on ties
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts]


def encode_ordinary(text: str, ranks: dict, pattern: str = "cl100k") -> list:
    """ids = concat(merge_piece(utf8(p)) for p in split_pieces(text)); special text is text."""
    return [i for piece in split_pieces(text, pattern) for i in merge_piece(piece.encode("utf-8"), ranks)]


def special_sets(text: str, special: dict, allowed_special=(), disallowed_special="all") -> tuple:
    """(allowed, disallowed) name sets of tiktoken's `Encoding.encode` ('all' allowed = every
    special; 'all' disallowed = every special not allowed), after checking that each name is
    a special token and that `text` contains no disallowed one."""
    allowed = set(special) if allowed_special == "all" else set(allowed_special)
    disallowed = set(special) - allowed if disallowed_special == "all" else set(disallowed_special)
    for arg, names in (("allowed_special", allowed), ("disallowed_special", disallowed)):
        for name in sorted(set(names) - set(special), key=repr):
            raise InputError(f"{arg}: {name!r} is not a special token of this vocabulary")
    for name in sorted(disallowed):
        if name in text:
            raise InputError(f"text: contains the disallowed special token {name!r}; pass it in "
                             f"allowed_special to encode it as a token, or remove it from "
                             f"disallowed_special to encode it as text")
    return allowed, disallowed


def encode(text: str, ranks: dict, special: dict, pattern: str = "cl100k",
           allowed_special=(), disallowed_special="all") -> list:
    """tiktoken's `Encoding.encode`: `allowed_special` ('all' or names) become their ids;
    text containing a `disallowed_special` name ('all' = every special not allowed) is an
    error; any other special text is encoded as ordinary text."""
    allowed, _ = special_sets(text, special, allowed_special, disallowed_special)
    if not allowed:
        return encode_ordinary(text, ranks, pattern)
    # Longest names first so a special that is a prefix of another cannot shadow it.
    splitter = "|".join(regex.escape(n) for n in sorted(allowed, key=lambda n: (-len(n), n)))
    ids = []
    for k, chunk in enumerate(regex.split(f"({splitter})", text)):
        if k % 2:  # odd chunks are the captured special tokens
            ids.append(special[chunk])
        elif chunk:
            ids.extend(encode_ordinary(chunk, ranks, pattern))
    return ids


def as_text(name, text) -> str:
    """str, or UTF-8 bytes decoded strictly; anything else (or a lone surrogate) is an error."""
    if isinstance(text, (bytes, bytearray, np.ndarray)):
        raw = bytes(np.asarray(text, dtype=np.uint8)) if isinstance(text, np.ndarray) else bytes(text)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: invalid UTF-8 at byte {exc.start} ({exc.reason})") from None
    if not isinstance(text, str):
        raise InputError(f"{name}: expected str or UTF-8 bytes, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{name}: lone surrogate at index {exc.start} cannot be UTF-8 encoded") from None
    return text


def _disallowed(value):
    """The spec's list form of tiktoken's disallowed_special: ['all'] means 'all'."""
    return "all" if list(value) == ["all"] else list(value)


def bpe_encode_args(text, merges, pattern, special_tokens, allowed_special, disallowed_special):
    """Validated (text, ranks, special, allowed, disallowed) of bpe_encode: text as str, the
    vocabulary built from merges, the special ids, and the allowed / disallowed name sets
    (text holding a disallowed name is an error); every backend checks through this."""
    text = as_text("text", text)
    pattern_regex(pattern)
    ranks = ranks_from_merges(merges)
    special = special_ids(ranks, special_tokens)
    for name, value in (("allowed_special", allowed_special), ("disallowed_special", disallowed_special)):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{name}: expected a list of special token names, got {value!r}")
    allowed, disallowed = special_sets(text, special, allowed_special, _disallowed(disallowed_special))
    return text, ranks, special, allowed, disallowed


def bpe_encode(text, merges, pattern="cl100k", special_tokens=(), allowed_special=(),
               disallowed_special=("all",)):
    """ids = encode(text) under the vocabulary built from `merges` (spec entry point)."""
    text, ranks, special, allowed, disallowed = bpe_encode_args(
        text, merges, pattern, special_tokens, allowed_special, disallowed_special)
    return np.asarray(encode(text, ranks, special, pattern, allowed, disallowed), dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_bytes(ids, ranks: dict, special: dict) -> bytes:
    """The concatenated bytes of the tokens; an id outside the vocabulary is an error."""
    ids = int_array("ids", ids, ndim=1)
    token_of = {i: t for t, i in ranks.items()}
    token_of.update({i: name.encode("utf-8") for name, i in special.items()})
    unknown = [int(i) for i in ids if int(i) not in token_of]
    if unknown:
        raise InputError(f"ids: {unknown[0]} is not a token id of this vocabulary "
                         f"({len(unknown)} unknown id(s))")
    return b"".join(token_of[int(i)] for i in ids)


def decode(ids, ranks: dict, special: dict, errors: str = "replace") -> str:
    """UTF-8 decode of decode_bytes; errors='replace' puts U+FFFD for every maximal invalid
    subpart (e.g. a character split between two decoded sequences), as tiktoken does."""
    return decode_bytes(ids, ranks, special).decode("utf-8", errors=errors)


def bpe_decode(ids, merges, special_tokens=()):
    """text = decode(ids) under the vocabulary built from `merges` (spec entry point)."""
    ranks = ranks_from_merges(merges)
    return decode(ids, ranks, special_ids(ranks, special_tokens))


# ---------------------------------------------------------------------------------------------
# Training


def pair_counts(words: dict) -> Counter:
    """{(a, b): sum of word counts over every adjacent occurrence of (a, b)}."""
    counts = Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += n
    return counts


def merge_word(word: tuple, pair: tuple, new_id: int) -> tuple:
    """Replace every non-overlapping occurrence of `pair`, left to right, by `new_id`."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train(text: str, n_merges: int, pattern: str = "cl100k") -> list:
    """Merges learned from `text`: repeatedly merge the most frequent adjacent pair inside the
    regex pieces. Tie-break (deterministic): among pairs of equal count, the smallest
    (left id, right id), ids being byte values and 256 + merge index. Stops early when no pair
    occurs (every piece is a single token)."""
    words = Counter(tuple(p.encode("utf-8")) for p in split_pieces(text, pattern))
    merges = []
    for new_id in range(256, 256 + n_merges):
        counts = pair_counts(words)
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent, then smallest ids
        merges.append(pair)
        words = Counter({merge_word(w, pair, new_id): n for w, n in words.items()})
    return merges


def bpe_train(text, n_merges, pattern="cl100k"):
    """merges (M, 2) int64 learned from `text` (spec entry point)."""
    text = as_text("text", text)
    if isinstance(n_merges, bool) or not isinstance(n_merges, (int, np.integer)) or n_merges < 0:
        raise InputError(f"n_merges: expected an integer >= 0, got {n_merges!r}")
    return np.asarray(train(text, int(n_merges), pattern), dtype=np.int64).reshape(-1, 2)
