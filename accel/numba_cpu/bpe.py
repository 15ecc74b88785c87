"""Byte-level BPE encoding with the merge loop in numba.njit (reference: llmref.ref.bpe).

Pre-tokenisation stays in Python (`regex`, the same patterns as the reference); the pieces
are handed to one compiled call as a UTF-8 buffer plus piece end offsets. The vocabulary
becomes two open-addressing hash tables held in NumPy arrays, one row per slot so that a
probe touches one cache line:
  pair table:  (left id, right id) -> id of the token bytes(left) + bytes(right), for every
               way of writing a token as the concatenation of two tokens;
  token table: FNV-1a hash of a token's bytes -> (id, offset, length), verified against the
               token bytes (tiktoken's whole-piece shortcut).
Merging only ever joins two tokens, so looking up the pair is the same as tiktoken's lookup of
the concatenated bytes: the ids equal the reference's exactly.
"""
import numba
import numpy as np
import regex

from llmref.errors import Unsupported
from llmref.ref import bpe as ref

_EMPTY = -1
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True)
def _slot(key, mask):
    """Fibonacci hashing of a 64-bit key into [0, mask]."""
    return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(32)) & mask


@numba.njit(cache=True)
def _table_build(keys, payload, capacity):
    """Open-addressing table (linear probing) of capacity (a power of two) rows
    [key, payload...]: a key and what it maps to share a cache line."""
    table = np.full((capacity, 1 + payload.shape[1]), _EMPTY, dtype=np.int64)
    mask = capacity - 1
    for i in range(keys.shape[0]):
        s = _slot(keys[i], mask)
        while table[s, 0] != _EMPTY and table[s, 0] != keys[i]:
            s = (s + 1) & mask
        table[s, 0] = keys[i]
        table[s, 1:] = payload[i]
    return table


@numba.njit(cache=True)
def _table_find(table, key):
    """The row holding key, or -1."""
    mask = table.shape[0] - 1
    s = _slot(key, mask)
    while table[s, 0] != _EMPTY:
        if table[s, 0] == key:
            return s
        s = (s + 1) & mask
    return _EMPTY


@numba.njit(cache=True)
def _fnv1a(buf, start, stop):
    """64-bit FNV-1a of buf[start:stop], as a non-negative int64 (the top bit cleared)."""
    h = _FNV_OFFSET
    for i in range(start, stop):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return np.int64(h >> np.uint64(1))


@numba.njit(cache=True)
def _token_hashes(flat, offsets):
    out = np.empty(offsets.shape[0] - 1, dtype=np.int64)
    for t in range(out.shape[0]):
        out[t] = _fnv1a(flat, offsets[t], offsets[t + 1])
    return out


@numba.njit(cache=True)
def _whole_token(buf, start, stop, tok_table, flat):
    """Id of buf[start:stop] if it is a token, else -1 (rows: hash, id, offset, length)."""
    row = _table_find(tok_table, _fnv1a(buf, start, stop))
    if row == _EMPTY or tok_table[row, 3] != stop - start:
        return _EMPTY
    offset = tok_table[row, 2]
    for i in range(stop - start):
        if flat[offset + i] != buf[start + i]:
            return _EMPTY
    return tok_table[row, 1]


@numba.njit(cache=True)
def _pair_rank(pair_table, left, right):
    """Id of the token bytes(left) + bytes(right), or -1 (rows: (left << 32) | right, id)."""
    row = _table_find(pair_table, (left << 32) | right)
    return _EMPTY if row == _EMPTY else pair_table[row, 1]


@numba.njit(cache=True)
def _byte_ends(codepoints, char_ends):
    """UTF-8 byte offset of each piece end, from code-point offsets (1-4 bytes per code point)."""
    ends = np.empty_like(char_ends)
    c, b = 0, 0
    for p in range(char_ends.shape[0]):
        while c < char_ends[p]:
            cp = codepoints[c]
            b += 1 + (cp >= 0x80) + (cp >= 0x800) + (cp >= 0x10000)
            c += 1
        ends[p] = b
    return ends


@numba.njit(cache=True)
def _encode_pieces(buf, ends, byte_id, pair_table, tok_table, flat):
    """ids of every piece buf[ends[p-1]:ends[p]]: whole-token shortcut, else lowest-rank merges.

    parts[0:n] are the current tokens of the piece, ranks[k] the id of parts[k] + parts[k+1]
    (-1 if not a token). A merge at k replaces parts[k], deletes parts[k+1] and recomputes the
    two neighbouring pair ranks.
    """
    out = np.empty(buf.shape[0], dtype=np.int64)
    parts = np.empty(buf.shape[0], dtype=np.int64)
    ranks = np.empty(buf.shape[0], dtype=np.int64)
    n_out = 0
    start = 0
    for p in range(ends.shape[0]):
        stop = ends[p]
        whole = _whole_token(buf, start, stop, tok_table, flat)
        if whole != _EMPTY:
            out[n_out] = whole
            n_out += 1
            start = stop
            continue
        n = stop - start
        for k in range(n):
            parts[k] = byte_id[buf[start + k]]
        for k in range(n - 1):
            ranks[k] = _pair_rank(pair_table, parts[k], parts[k + 1])
        while n > 1:
            best = -1
            for k in range(n - 1):  # lowest rank, leftmost on ties
                if ranks[k] != _EMPTY and (best == -1 or ranks[k] < ranks[best]):
                    best = k
            if best == -1:
                break
            parts[best] = ranks[best]
            for k in range(best + 1, n - 1):
                parts[k] = parts[k + 1]
            for k in range(best + 1, n - 2):
                ranks[k] = ranks[k + 1]
            n -= 1
            if best > 0:
                ranks[best - 1] = _pair_rank(pair_table, parts[best - 1], parts[best])
            if best < n - 1:
                ranks[best] = _pair_rank(pair_table, parts[best], parts[best + 1])
        for k in range(n):
            out[n_out] = parts[k]
            n_out += 1
        start = stop
    return out[:n_out]


def _capacity(n):
    """The smallest power of two >= 2n (load factor <= 1/2)."""
    return 1 << max(4, int(2 * max(n, 1) - 1).bit_length())


class Encoder:
    """A compiled encoder for one vocabulary {token bytes: id} and its special tokens."""

    def __init__(self, ranks: dict, special: dict, pattern: str = "cl100k"):
        self.regex = regex.compile(ref.pattern_regex(pattern))
        self.ranks, self.special, self.pattern = ref.byte_level(ranks), dict(special), pattern
        n_ids = max(ranks.values()) + 1
        by_id = [b""] * n_ids
        for token, i in ranks.items():
            by_id[i] = token
        lengths = np.fromiter(map(len, by_id), dtype=np.int64, count=n_ids)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # (n_ids + 1,)
        self.flat = np.frombuffer(b"".join(by_id), dtype=np.uint8)
        self.byte_id = np.asarray([ranks[bytes([b])] for b in range(256)], dtype=np.int64)
        keys, values = [], []
        for token, i in ranks.items():  # every split of a token into two tokens
            for k in range(1, len(token)):
                left, right = ranks.get(token[:k]), ranks.get(token[k:])
                if left is not None and right is not None:
                    keys.append((left << 32) | right)
                    values.append(i)
        keys, values = np.asarray(keys, dtype=np.int64), np.asarray(values, dtype=np.int64)
        self.pair_table = _table_build(keys, values[:, None], _capacity(len(keys)))
        hashes = _token_hashes(self.flat, self.offsets)
        present = np.asarray([i for i in range(n_ids) if by_id[i]], dtype=np.int64)
        if np.unique(hashes[present]).size != present.size:  # a limit of this backend, not bad input
            raise Unsupported("two tokens of this vocabulary share a 64-bit FNV-1a hash; use the reference")
        rows = np.stack([present, self.offsets[present], lengths[present]], axis=1)  # (id, offset, length)
        self.tok_table = _table_build(hashes[present], rows, _capacity(present.size))

    def encode_ordinary(self, text: str) -> np.ndarray:
        """ids of text, special-token text treated as text."""
        pieces = self.regex.findall(text)
        buf = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        char_ends = np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)))
        if char_ends.size and char_ends[-1] != len(text):
            raise AssertionError("the pre-tokenisation pattern left characters unmatched")
        if buf.size == len(text):  # ASCII: character and byte offsets coincide
            ends = char_ends
        else:
            ends = _byte_ends(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), char_ends)
        return _encode_pieces(buf, ends, self.byte_id, self.pair_table, self.tok_table, self.flat)

    def encode(self, text: str, allowed_special=(), disallowed_special="all") -> np.ndarray:
        """tiktoken's Encoding.encode semantics, checked by llmref.ref.bpe.special_sets."""
        allowed, _ = ref.special_sets(text, self.special, allowed_special, disallowed_special)
        return self.encode_allowed(text, allowed)

    def encode_allowed(self, text: str, allowed: set) -> np.ndarray:
        """ids of text with the names in `allowed` (already checked) cut out as their ids."""
        if not allowed:
            return self.encode_ordinary(text)
        splitter = "|".join(regex.escape(n) for n in sorted(allowed, key=lambda n: (-len(n), n)))
        chunks = regex.split(f"({splitter})", text)
        parts = [np.asarray([self.special[c]], dtype=np.int64) if k % 2 else self.encode_ordinary(c)
                 for k, c in enumerate(chunks) if c or k % 2]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


_ENCODERS = {}


def _encoder_for(merges, ranks, special, pattern) -> Encoder:
    """One Encoder per (merges, specials, pattern), built on first use from the checked
    vocabulary."""
    key = (merges.tobytes(), merges.dtype.str, merges.shape, tuple(special.items()), pattern)
    if key not in _ENCODERS:
        _ENCODERS[key] = Encoder(ranks, special, pattern)
    return _ENCODERS[key]


def bpe_encode(text, merges, pattern="cl100k", special_tokens=(), allowed_special=(),
               disallowed_special=("all",)):
    text, ranks, special, allowed, _ = ref.bpe_encode_args(
        text, merges, pattern, special_tokens, allowed_special, disallowed_special)
    return _encoder_for(np.ascontiguousarray(merges), ranks, special, pattern).encode_allowed(text, allowed)
