"""Byte-level BPE, GPT-2 / tiktoken style (specs/bpe_encode.yaml, bpe_decode.yaml, bpe_train.yaml).

A vocabulary is `ranks`: token bytes -> id. Ids 0..255 are the single bytes; a merge list
[(a, b), ...] adds token 256 + i = bytes(a) + bytes(b) for merge i, so a token's id is also its
merge rank (lower = learned earlier). Special tokens take the ids after the vocabulary.

Encoding, per tiktoken (src/lib.rs `byte_pair_encode`, `_educational.py`):
  1. special tokens that are allowed are cut out of the text and emitted as their ids;
  2. the rest is pre-tokenised by a regex into pieces (never merged across);
  3. a piece that is itself a token is emitted as that token; otherwise it starts as its bytes
     and the adjacent pair whose concatenation has the LOWEST rank is merged, leftmost on ties,
     until no adjacent concatenation is a token. `merge_adjacent` does this with a heap of
     candidate pairs over a linked list of parts: O(n log n) for a piece of n bytes, where
     rescanning every pair after each merge (the definition) is O(n^2) - one unbroken piece of
     CJK, emoji, base64 or DNA can be megabytes long.
Decoding concatenates token bytes and decodes UTF-8 with errors='replace' (like tiktoken's
`decode`): a byte sequence that is not valid UTF-8 becomes U+FFFD per maximal invalid subpart.
"""
import heapq
import json
from collections import Counter
from functools import lru_cache

import numpy as np
import regex

from llmref.errors import InputError
from llmref.ref._corpus import CORPUS, SPECIAL_TOKENS, sample_text
from llmref.ref._text import as_text, public_text, token_ids
from llmref.validate import int_array, integer

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
    {text: id} mapping, whose ids are distinct integers that are no id of the vocabulary: one
    shared would make decoding ambiguous). Names are distinct, non-empty strings."""
    if not isinstance(special_tokens, (list, tuple, dict)):
        raise InputError(f"special_tokens: expected a list of names, got {special_tokens!r}")
    names = list(special_tokens)
    for k, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise InputError(f"special_tokens: entry {k} is {name!r}, not a non-empty string")
        if name in names[:k]:
            raise InputError(f"special_tokens: {name!r} is listed twice")
    if isinstance(special_tokens, dict):
        vocabulary_ids = set(ranks.values())
        for name, i in special_tokens.items():
            if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or i < 0:
                raise InputError(f"special_tokens: the id of {name!r} is {i!r}, not a non-negative integer")
            if i in vocabulary_ids:
                raise InputError(f"special_tokens: the id {i} of {name!r} is already a token of the vocabulary")
        if len(set(special_tokens.values())) != len(special_tokens):
            raise InputError("special_tokens: two names share an id")
        return {name: int(i) for name, i in special_tokens.items()}
    return {name: len(ranks) + i for i, name in enumerate(names)}


def byte_level(ranks: dict) -> dict:
    """`ranks` itself, after checking that every single byte is a token (byte-level BPE
    encodes any text only then)."""
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise InputError(f"ranks: byte {missing[0]:#04x} is not a token; byte-level BPE needs all 256")
    return ranks


def _read_vocabulary_file(path) -> bytes:
    """The bytes of a vocabulary file; a missing, empty or BOM-prefixed file is an error."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InputError(f"path: cannot read {path} ({exc.strerror or exc})") from None
    if not data.strip():
        raise InputError(f"path: {path} is empty")
    if data.startswith(b"\xef\xbb\xbf"):
        raise InputError(f"path: {path} starts with a UTF-8 byte-order mark (U+FEFF), which "
                         f"would become part of the first token; save the file without it")
    return data


def load_tiktoken(path) -> dict:
    """A .tiktoken file: one 'base64(token bytes) rank' per line -> {bytes: rank}, as
    tiktoken/load.py load_tiktoken_bpe reads it. Blank lines are skipped; a malformed line, a
    negative rank, a token or a rank given twice is an error naming the line."""
    import base64
    import binascii

    ranks, line_of, token_of = {}, {}, {}
    for number, line in enumerate(_read_vocabulary_file(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError("expected 'base64 rank'")
            token, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
        except (ValueError, binascii.Error) as exc:
            raise InputError(f"path: line {number} of {path} is malformed ({exc})") from None
        if rank < 0:
            raise InputError(f"path: line {number} of {path} has a negative rank {rank}")
        if token in ranks:
            raise InputError(f"path: line {number} of {path} repeats the token {token!r} of "
                             f"line {line_of[token]}")
        if rank in token_of:
            raise InputError(f"path: line {number} of {path} gives rank {rank} to {token!r}, "
                             f"which line {line_of[token_of[rank]]} gave to {token_of[rank]!r}")
        ranks[token], line_of[token], token_of[rank] = rank, number, token
    return ranks


def load_data_gym(vocab_bpe, encoder_json) -> dict:
    """GPT-2's vocab.bpe (merges) + encoder.json -> {bytes: rank}, as tiktoken/load.py
    data_gym_to_mergeable_bpe_ranks builds the gpt2 encoding: the 256 bytes first, ranked in
    bytes_to_unicode order (printable bytes, then the others), then one token per merge line;
    encoder.json must give every token the same id."""
    to_char = bytes_to_unicode()
    order = sorted(range(256), key=lambda b: (ord(to_char[b]) >= 256, ord(to_char[b])))
    byte_of = {c: b for b, c in to_char.items()}
    ranks = {bytes([b]): rank for rank, b in enumerate(order)}
    lines = _read_vocabulary_file(vocab_bpe).decode("utf-8").split("\n")
    for number, line in enumerate(lines[1:-1], 2):  # line 1 is '#version: 0.2'
        parts = line.split()
        try:
            token = b"".join(bytes(byte_of[c] for c in part) for part in parts)
        except KeyError as exc:
            raise InputError(f"vocab_bpe: line {number} has {exc.args[0]!r}, not a byte-level "
                             f"character") from None
        if len(parts) != 2 or token in ranks:
            raise InputError(f"vocab_bpe: line {number} ({line!r}) is not a new merge 'a b'")
        ranks[token] = len(ranks)
    encoder = json.loads(_read_vocabulary_file(encoder_json).decode("utf-8"))
    encoder.pop("<|endoftext|>", None)  # a special token, not a merge (tiktoken drops it too)
    for text, i in encoder.items():
        token = bytes(byte_of[c] for c in text if c in byte_of)
        if len(token) != len(text) or ranks.get(token) != i:
            raise InputError(f"encoder_json: {text!r} has id {i}, the merges give it "
                             f"{ranks.get(token)}")
    if len(encoder) != len(ranks):
        raise InputError(f"encoder_json: {len(encoder)} tokens, the merges make {len(ranks)}")
    return ranks


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


def merge_adjacent(parts: list, merge) -> list:
    """Repeatedly merge the adjacent pair of lowest priority, leftmost on ties, until no
    adjacent pair merges; `merge(a, b)` is (priority: int, merged part) or None.

    The definition rescans every adjacent pair after each merge: O(n^2) for n parts. Here:
      * the parts form a linked list (nxt/prv over their first positions), so a merge is O(1);
      * a heap holds one key per candidate pair, priority * n + position: one integer that
        sorts by priority, then leftmost first - the definition's order;
      * a merge changes only the pairs it forms with its two neighbours; those are pushed anew
        and the old keys are left in the heap (lazy invalidation): a popped key is applied
        only if the pair now at its position still merges with that priority. Every current
        pair has its key in the heap, so the smallest valid key is the definition's choice.
    Each merge pushes at most two keys and each key is popped once: O(n log n) time and O(n)
    memory, with the same merges in the same order as the definition.
    """
    n = len(parts)
    parts = list(parts)
    nxt = list(range(1, n)) + [-1]
    prv = list(range(-1, n - 1))
    alive = [True] * n

    def key(i):  # the heap key of the pair starting at part i, or None
        j = nxt[i]
        found = merge(parts[i], parts[j]) if j != -1 else None
        return None if found is None else found[0] * n + i

    heap = [k for k in map(key, range(n - 1)) if k is not None]
    heapq.heapify(heap)
    while heap:
        priority, i = divmod(heapq.heappop(heap), n)
        j = nxt[i]
        if not alive[i] or j == -1:
            continue  # stale: the part was merged into its left neighbour, or has none right
        found = merge(parts[i], parts[j])
        if found is None or found[0] != priority:
            continue  # stale: the pair at i changed since this key was pushed
        parts[i], alive[j] = found[1], False
        nxt[i] = nxt[j]
        if nxt[j] != -1:
            prv[nxt[j]] = i
        for start in (prv[i], i):  # the two pairs this merge created
            if start != -1 and (k := key(start)) is not None:
                heapq.heappush(heap, k)
    out, i = [], 0 if n else -1
    while i != -1:
        out.append(parts[i])
        i = nxt[i]
    return out


def merge_piece(piece: bytes, ranks: dict) -> list:
    """Token ids of one pre-tokenised piece by lowest-rank merging (tiktoken): the whole piece
    if it is a token, else its bytes merged by merge_adjacent, where a pair merges when its
    concatenation is a token, with that token's rank as priority."""
    if piece in ranks:  # tiktoken emits a whole-piece token directly
        return [ranks[piece]]

    def merge(a: bytes, b: bytes):
        rank = ranks.get(a + b)
        return None if rank is None else (rank, a + b)

    return [ranks[p] for p in merge_adjacent([piece[i:i + 1] for i in range(len(piece))], merge)]


def encode_ordinary(text: str, ranks: dict, pattern: str = "cl100k") -> list:
    """ids = concat(merge_piece(utf8(p)) for p in split_pieces(text)); special text is text.
    text must be a str; a lone surrogate is repaired as tiktoken does."""
    text = public_text("text", text, surrogates="tiktoken")
    return [i for piece in split_pieces(text, pattern) for i in merge_piece(piece.encode("utf-8"), ranks)]


def special_sets(text: str, special: dict, allowed_special=(), disallowed_special="all") -> tuple:
    """(allowed, disallowed) name sets of tiktoken's `Encoding.encode` (tiktoken/core.py):
    allowed_special 'all' = every special token, else a collection of names, of which those
    that are not special tokens are ignored (they can never be cut out); disallowed_special
    'all' = every special token not allowed, else a collection of names. Text containing any
    disallowed name - a special token or not, as tiktoken searches for each - is an error."""
    for arg, value in (("allowed_special", allowed_special), ("disallowed_special", disallowed_special)):
        if value != "all" and (isinstance(value, (str, bytes)) or not all(isinstance(v, str) for v in value)):
            raise InputError(f"{arg}: expected 'all' or a collection of special token names, "
                             f"got {value!r}")
    allowed = set(special) if allowed_special == "all" else set(allowed_special) & set(special)
    disallowed = set(special) - allowed if disallowed_special == "all" else set(disallowed_special)
    for name in sorted(disallowed):
        if name and name in text:
            raise InputError(f"text: contains the disallowed special token {name!r}; pass it in "
                             f"allowed_special to encode it as a token, or remove it from "
                             f"disallowed_special to encode it as text")
    return allowed, disallowed


def split_special(text: str, allowed: set) -> list:
    """text cut at every allowed special name: [chunk, name, chunk, name, ..., chunk] (odd
    entries are names). Longer names first, so a name that is a prefix of another cannot
    shadow it."""
    if not allowed:
        return [text]
    splitter = "|".join(regex.escape(n) for n in sorted(allowed, key=lambda n: (-len(n), n)))
    return regex.split(f"({splitter})", text)


def encode(text: str, ranks: dict, special: dict, pattern: str = "cl100k",
           allowed_special=(), disallowed_special="all") -> list:
    """tiktoken's `Encoding.encode`: `allowed_special` ('all' or names) become their ids;
    text containing a `disallowed_special` name ('all' = every special not allowed) is an
    error; any other special text is encoded as ordinary text."""
    text = public_text("text", text, surrogates="tiktoken")
    allowed, _ = special_sets(text, special, allowed_special, disallowed_special)
    ids = []
    for k, chunk in enumerate(split_special(text, allowed)):
        if k % 2:  # odd chunks are the captured special tokens
            ids.append(special[chunk])
        elif chunk:
            ids.extend(encode_ordinary(chunk, ranks, pattern))
    return ids


def _disallowed(value):
    """The spec's list form of tiktoken's disallowed_special: ['all'] means 'all'."""
    return "all" if list(value) == ["all"] else list(value)


def batch_args(texts, threads):
    """Validated (texts, threads) of a batch encode: texts a list of str (any iterable of them),
    threads None (the caller's default) or an integer >= 1."""
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        raise InputError(f"texts: expected a list of str, got {type(texts).__name__}")
    texts = list(texts)
    for k, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts: entry {k} is {type(text).__name__}, not str")
    return texts, None if threads is None else integer("threads", threads, low=1)


def bpe_vocabulary_args(merges, pattern, special_tokens):
    """Validated (ranks, special) of bpe_encode's vocabulary: the pattern's name known, the
    vocabulary built from merges, the special ids."""
    pattern_regex(pattern)
    ranks = ranks_from_merges(merges)
    return ranks, special_ids(ranks, special_tokens)


def bpe_text_args(text, special, allowed_special, disallowed_special):
    """Validated (text, allowed, disallowed) of bpe_encode under the checked special ids: text
    as str (lone surrogates repaired as tiktoken does) and the allowed / disallowed name sets
    (text holding a disallowed name is an error). The spec is stricter than tiktoken about
    names: one that is not a special token is an error naming its list."""
    text = as_text("text", text, surrogates="tiktoken")
    for name, value in (("allowed_special", allowed_special), ("disallowed_special", disallowed_special)):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{name}: expected a list of special token names, got {value!r}")
        unknown = sorted(set(value) - set(special) - ({"all"} if name == "disallowed_special" else set()))
        if unknown:
            raise InputError(f"{name}: {unknown[0]!r} is not a special token of this vocabulary")
    allowed, disallowed = special_sets(text, special, allowed_special, _disallowed(disallowed_special))
    return text, allowed, disallowed


def bpe_encode_args(text, merges, pattern, special_tokens, allowed_special, disallowed_special):
    """Validated (text, ranks, special, allowed, disallowed) of bpe_encode: bpe_vocabulary_args,
    then bpe_text_args. Every backend checks through these two."""
    ranks, special = bpe_vocabulary_args(merges, pattern, special_tokens)
    text, allowed, disallowed = bpe_text_args(text, special, allowed_special, disallowed_special)
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
    ids = token_ids("ids", ids)
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
    n_merges = integer("n_merges", n_merges, low=0)
    return np.asarray(train(text, n_merges, pattern), dtype=np.int64).reshape(-1, 2)


# --- case generators (specs/bpe_encode.yaml, bpe_decode.yaml, bpe_train.yaml) ---

# A small vocabulary keeps the goldens small while still merging within words.
N_MERGES = 300


@lru_cache(maxsize=4)
def trained_merges(pattern: str = "cl100k", n_merges: int = N_MERGES) -> np.ndarray:
    """Merges (M, 2) trained by the reference on CORPUS; computed once per process."""
    return np.asarray(train(CORPUS, n_merges, pattern=pattern), dtype=np.int64).reshape(-1, 2)


def bpe_encode_case(rng, sample, train_pattern="cl100k"):
    """Inputs of a bpe_encode case: a sample and the merges trained on the corpus."""
    return {"text": sample_text(sample), "merges": trained_merges(train_pattern)}


def bpe_decode_case(rng, sample):
    """Inputs of a bpe_decode case: the reference's ids for a sample, or raw byte ids that
    split multi-byte UTF-8 characters ('split_utf8')."""
    merges = trained_merges()
    if sample == "split_utf8":
        emoji = "😀".encode("utf-8")  # 4 bytes; byte ids are the byte values
        ids = list(b"ok ") + list(emoji[:2]) + list(b" ") + list(emoji) + list(emoji[1:])
        return {"ids": np.asarray(ids, dtype=np.int64), "merges": merges}
    ids = bpe_encode(text=sample_text(sample), merges=merges, special_tokens=SPECIAL_TOKENS,
                     allowed_special=SPECIAL_TOKENS, disallowed_special=[])
    return {"ids": ids, "merges": merges}


def bpe_train_case(rng, sample):
    """Inputs of a bpe_train case: the training text."""
    return {"text": sample_text(sample)}
