"""Byte-level BPE encoding in numba.njit, from code points to ids (reference: llmref.ref.bpe).

A text goes to one compiled call as its code points (UTF-32), its UTF-8 bytes and its chunks
between allowed special tokens (cut in Python, as the reference cuts them). Each chunk is
pre-tokenised by the compiled scanner of _pretokenize (the reference's regex patterns, exactly)
and its pieces merged; no Python runs per piece. A batch of documents is cut into ranges of
documents that threads join and encode at once (the compiled calls release the GIL).

The vocabulary becomes two open-addressing hash tables held in NumPy arrays, one row per slot
so that a probe touches one cache line:
  pair table:  (left id, right id) -> id of the token bytes(left) + bytes(right), for every
               way of writing a token as the concatenation of two tokens;
  token table: FNV-1a hash of a token's bytes -> (id, offset, length), verified against the
               token bytes (tiktoken's whole-piece shortcut).
Merging only ever joins two tokens, so looking up the pair is the same as tiktoken's lookup of
the concatenated bytes: the ids equal the reference's exactly. Short pieces are merged by
rescanning every pair after each merge; pieces longer than _SCAN_MAX bytes by a heap of
candidate pairs over a linked list (the reference's merge_adjacent), so one unbroken piece of
n bytes costs O(n log n).
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from llmref.accel.numba_cpu import _pretokenize
from llmref.errors import Unsupported
from llmref.ref import bpe as ref

_EMPTY = -1
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# Ranges of documents per thread of a batch. The last range to finish leaves the other threads
# idle for about half a range, 1 / (2 RANGES_PER_THREAD) of a thread's work: at 4, 815
# documents of 4 kB on two threads ran 1.69x the one-thread rate (1.81 CPUs busy), at 16
# 1.90x (1.91 CPUs; the compute-only control gave 1.96x in the same rounds).
RANGES_PER_THREAD = 16


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
        for c in range(payload.shape[1]):  # (a slice assignment compiles its error path: 2.5 s)
            table[s, 1 + c] = payload[i, c]
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
    row = _table_find(pair_table, (np.int64(left) << 32) | np.int64(right))
    return _EMPTY if row == _EMPTY else pair_table[row, 1]


# Pieces up to this many bytes are merged by rescanning (fast for the short pieces of ordinary
# text); longer ones by the heap, as the reference's merge_adjacent: O(n log n), not O(n^2).
_SCAN_MAX = 64


@numba.njit(cache=True)
def _merge_scan(parts, ranks, n, pair_table):
    """Lowest-rank merging of parts[0:n] by rescanning: ranks[k] is the id of parts[k] +
    parts[k+1] (-1 if not a token); a merge at k replaces parts[k], deletes parts[k+1] and
    recomputes the two neighbouring pair ranks. Returns the new n."""
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
    return n


# The heap is 4-ary (as the tokenizers library's QuaternaryHeap): half the levels of a binary
# heap, and the four children of a node share a cache line.
@numba.njit(cache=True)
def _heap_push(heap, size, key):
    heap[size] = key
    k = size
    while k > 0 and heap[(k - 1) >> 2] > heap[k]:
        parent = (k - 1) >> 2
        heap[k], heap[parent] = heap[parent], heap[k]
        k = parent
    return size + 1


@numba.njit(cache=True)
def _sift_down(heap, size, k):
    while True:
        first = 4 * k + 1
        if first >= size:
            return
        child = first
        for c in range(first + 1, min(first + 4, size)):
            if heap[c] < heap[child]:
                child = c
        if heap[k] <= heap[child]:
            return
        heap[k], heap[child] = heap[child], heap[k]
        k = child


@numba.njit(cache=True)
def _heap_pop(heap, size):
    """Moves the smallest key to heap[size - 1] and restores the heap on heap[0:size - 1]."""
    size -= 1
    heap[0], heap[size] = heap[size], heap[0]
    _sift_down(heap, size, 0)
    return size


@numba.njit(cache=True)
def _merge_heap(parts, n, pair_table, nxt, prv, pair, heap):
    """Lowest-rank merging of parts[0:n] as the reference's merge_adjacent: a linked list of
    parts (nxt/prv), pair[i] = the rank of the pair starting at part i (-1: none), and a heap
    of keys rank * n + position; a popped key is stale unless pair[position] still holds its
    rank. Compacts the result into parts and returns its length."""
    size = 0
    for k in range(n):
        nxt[k] = k + 1 if k + 1 < n else -1
        prv[k] = k - 1
        pair[k] = _pair_rank(pair_table, parts[k], parts[k + 1]) if k + 1 < n else _EMPTY
        if pair[k] != _EMPTY:  # the initial keys, then one bottom-up heapify: O(n)
            heap[size] = pair[k] * n + k
            size += 1
    for k in range((size - 2) // 4, -1, -1):
        _sift_down(heap, size, k)
    while size > 0:
        size = _heap_pop(heap, size)
        rank, i = heap[size] // n, heap[size] % n
        if pair[i] != rank:
            continue  # stale: the pair at i changed (or part i was merged away)
        j = nxt[i]
        parts[i] = rank
        pair[j] = _EMPTY
        nxt[i] = nxt[j]
        if nxt[j] != -1:
            prv[nxt[j]] = i
        left = prv[i]
        if left != -1:
            pair[left] = _pair_rank(pair_table, parts[left], parts[i])
            if pair[left] != _EMPTY:
                size = _heap_push(heap, size, pair[left] * n + left)
        pair[i] = _pair_rank(pair_table, parts[i], parts[nxt[i]]) if nxt[i] != -1 else _EMPTY
        if pair[i] != _EMPTY:
            size = _heap_push(heap, size, pair[i] * n + i)
    count, k = 0, 0
    while k != -1:
        parts[count] = parts[k]
        count += 1
        k = nxt[k]
    return count


@numba.njit(cache=True, nogil=True)
def _merge_pieces(buf, start, ends, count, byte_id, pair_table, tok_table, flat, out, n_out):
    """ids of the pieces buf[start:ends[0]], buf[ends[0]:ends[1]], ... (count of them) written
    to out[n_out:]: whole-token shortcut, else lowest-rank merges (rescanning for short pieces,
    the heap for long ones). Returns the new n_out."""
    longest = 0
    begin = start
    for p in range(count):
        longest = max(longest, ends[p] - begin)
        begin = ends[p]
    parts = np.empty(longest, dtype=np.int32)  # ids, and positions, fit 32 bits: less memory traffic
    ranks = np.empty(min(longest, _SCAN_MAX), dtype=np.int64)
    heap_n = longest if longest > _SCAN_MAX else 0
    nxt = np.empty(heap_n, dtype=np.int32)  # a piece is shorter than 2 GB
    prv = np.empty(heap_n, dtype=np.int32)
    pair = np.empty(heap_n, dtype=np.int32)
    heap = np.empty(3 * heap_n, dtype=np.int64)  # n - 1 initial keys + at most 2 per merge
    begin = start
    for p in range(count):
        stop = ends[p]
        whole = _whole_token(buf, begin, stop, tok_table, flat)
        if whole != _EMPTY:
            out[n_out] = whole
            n_out += 1
            begin = stop
            continue
        n = stop - begin
        for k in range(n):
            parts[k] = byte_id[buf[begin + k]]
        if n <= _SCAN_MAX:
            n = _merge_scan(parts, ranks, n, pair_table)
        else:
            n = _merge_heap(parts, n, pair_table, nxt, prv, pair, heap)
        for k in range(n):
            out[n_out] = parts[k]
            n_out += 1
        begin = stop
    return n_out


@numba.njit(cache=True, nogil=True)
def _to_utf8(cps, offsets, count, c, b):
    """offsets[:count], increasing code-point offsets from c (UTF-8 byte offset b), made UTF-8
    byte offsets in place (1-4 bytes per code point)."""
    for k in range(count):
        while c < offsets[k]:
            cp = cps[c]
            b += 1 + (cp >= 0x80) + (cp >= 0x800) + (cp >= 0x10000)
            c += 1
        offsets[k] = b


@numba.njit(cache=True, nogil=True)
def _encode_chunks(cps, buf, bounds, byte_bounds, kinds, lo, hi, pattern, classes, fold,
                   byte_id, pair_table, tok_table, flat, ends, out, n_out):
    """ids of chunks lo..hi-1 of a text written to out[n_out:]; returns the new n_out. Chunk k
    is cps[bounds[k]:bounds[k + 1]] (UTF-8 buf[byte_bounds[k]:byte_bounds[k + 1]]): a special
    token, kinds[k] its id, or ordinary text (kinds[k] = -1), pre-tokenised on its own (its end
    is the pattern's end of string, as the reference splits specials out first) and merged.
    ends is scratch room for one chunk's piece ends."""
    for k in range(lo, hi):
        if kinds[k] >= 0:
            out[n_out] = kinds[k]
            n_out += 1
            continue
        count = _pretokenize.piece_ends(cps, bounds[k], bounds[k + 1], pattern, classes, fold, ends, 0)
        if byte_bounds[k + 1] - byte_bounds[k] != bounds[k + 1] - bounds[k]:  # not ASCII
            _to_utf8(cps, ends, count, bounds[k], byte_bounds[k])
        else:
            for p in range(count):  # ASCII: a code point is a byte
                ends[p] += byte_bounds[k] - bounds[k]
        n_out = _merge_pieces(buf, byte_bounds[k], ends, count, byte_id, pair_table, tok_table, flat,
                              out, n_out)
    return n_out


@numba.njit(cache=True, nogil=True)
def _longest_chunk(bounds):
    longest = 0
    for k in range(bounds.shape[0] - 1):
        longest = max(longest, bounds[k + 1] - bounds[k])
    return longest


@numba.njit(cache=True, nogil=True)
def _encode_documents(cps, buf, bounds, kinds, doc_chunks, pattern, classes, fold, byte_id, pair_table,
                      tok_table, flat):
    """ids of the documents of a batch (see Encoder._batch), concatenated, and the count of
    each: document d is chunks doc_chunks[d]..doc_chunks[d + 1]-1 of the batch's joined text
    (see _encode_chunks). Releases the GIL, so threads encode batches at once."""
    byte_bounds = bounds.copy()
    if buf.shape[0] != cps.shape[0]:
        _to_utf8(cps, byte_bounds, byte_bounds.shape[0], 0, 0)
    ends = np.empty(_longest_chunk(bounds), dtype=np.int64)
    out = np.empty(buf.shape[0] + kinds.shape[0], dtype=np.int64)  # at most one id per byte or special
    counts = np.empty(doc_chunks.shape[0] - 1, dtype=np.int64)
    n_out = np.int64(0)  # a literal 0 would compile _encode_chunks twice (Literal[int](0), int64)
    for d in range(counts.shape[0]):
        before = n_out
        n_out = _encode_chunks(cps, buf, bounds, byte_bounds, kinds, doc_chunks[d], doc_chunks[d + 1], pattern,
                               classes, fold, byte_id, pair_table, tok_table, flat, ends, out, n_out)
        counts[d] = n_out - before
    return out[:n_out], counts


def _capacity(n):
    """The smallest power of two >= 2n (load factor <= 1/2)."""
    return 1 << max(4, int(2 * max(n, 1) - 1).bit_length())


class Encoder:
    """A compiled encoder for one vocabulary {token bytes: id} and its special tokens."""

    def __init__(self, ranks: dict, special: dict, pattern: str = "cl100k"):
        ref.pattern_regex(pattern)  # an unknown name is an InputError
        self.ranks, self.special, self.pattern = ref.byte_level(ranks), dict(special), pattern
        self.pattern_id = _pretokenize.PATTERN_IDS[pattern]
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

    def _tables(self):
        """The arguments every compiled call shares: pattern, class tables, vocabulary tables."""
        classes, fold = _pretokenize.tables()
        return (self.pattern_id, classes, fold, self.byte_id, self.pair_table, self.tok_table, self.flat)

    def _chunks(self, text: str, allowed) -> tuple:
        """(chunks, kinds): text cut at the allowed special names as llmref.ref.bpe.split_special
        cuts it; kinds[k] = the id of a special chunk, -1 for text."""
        if not allowed:
            return [text], [-1]
        chunks = ref.split_special(text, allowed)
        return chunks, [self.special[c] if k % 2 else -1 for k, c in enumerate(chunks)]

    def encode_ordinary(self, text: str) -> np.ndarray:
        """ids of text, special-token text treated as text."""
        return self.encode_allowed(text, ())

    def encode(self, text: str, allowed_special=(), disallowed_special="all") -> np.ndarray:
        """tiktoken's Encoding.encode semantics, checked by llmref.ref.bpe.special_sets."""
        allowed, _ = ref.special_sets(text, self.special, allowed_special, disallowed_special)
        return self.encode_allowed(text, allowed)

    def encode_allowed(self, text: str, allowed) -> np.ndarray:
        """ids of text with the names in `allowed` (already checked) cut out as their ids: one
        compiled call from code points to ids."""
        _, *batch = self._batch([text], allowed)
        return _encode_documents(*batch, *self._tables())[0]

    def encode_batch(self, texts, allowed_special=(), disallowed_special="all", threads=None) -> list:
        """[encode(text, allowed_special, disallowed_special) for text in texts], the documents
        encoded by `threads` threads at once (default: the CPUs this process may run on). A
        disallowed special token is searched for in the joined UTF-8 bytes of each range of
        texts; only if one is found (maybe across two documents) are the texts checked one by
        one, so the error is the one encode would raise on the first offending text."""
        texts, threads = ref.batch_args(texts, threads)
        allowed, disallowed = ref.special_sets("", self.special, allowed_special, disallowed_special)
        names = [name.encode("utf-8") for name in disallowed if name]
        ids, found = self._encode_ranges(texts, allowed, names, threads)
        if found:
            for text in texts:
                ref.special_sets(text, self.special, allowed_special, disallowed_special)
        return ids

    def encode_ordinary_batch(self, texts, threads=None) -> list:
        """[encode_ordinary(text) for text in texts], on `threads` threads (see encode_batch)."""
        return self.encode_batch_allowed(texts, (), threads)

    def encode_batch_allowed(self, texts, allowed, threads=None) -> list:
        """[encode_allowed(text, allowed) for text in texts], on `threads` threads."""
        texts, threads = ref.batch_args(texts, threads)
        return self._encode_ranges(texts, allowed, (), threads)[0]

    def _batch(self, texts: list, allowed) -> tuple:
        """The texts joined: (UTF-8 bytes, code points, UTF-8 array, chunk bounds in code points,
        chunk kinds, first chunk of each document and the end)."""
        chunks, kinds, doc_chunks = [], [], [0]
        for text in texts:
            text_chunks, text_kinds = self._chunks(text, allowed)
            chunks += text_chunks
            kinds += text_kinds
            doc_chunks.append(len(kinds))
        joined = "".join(chunks)
        data = joined.encode("utf-8")
        bounds = np.zeros(len(chunks) + 1, dtype=np.int64)
        np.cumsum([len(c) for c in chunks], out=bounds[1:])
        return (data, _pretokenize.codepoints(joined), np.frombuffer(data, dtype=np.uint8), bounds,
                np.asarray(kinds, dtype=np.int64), np.asarray(doc_chunks, dtype=np.int64))

    def _encode_ranges(self, texts: list, allowed, names, threads) -> tuple:
        """(the ids of every text, one array each; whether a name of `names` shows in the joined
        UTF-8 of a range): the texts cut into ranges of about equal length, each made a _batch
        and encoded by one compiled call that releases the GIL, on a pool of threads. A thread
        makes its own range's batch (Python, holding the GIL) while the others encode theirs:
        joined once before the threads started, the whole batch's joining and conversions ran
        alone, 30 of 250 ms on 4 MB."""
        if not texts:
            return [], False
        threads = _cpus() if threads is None else threads
        parts = min(len(texts), RANGES_PER_THREAD * threads)
        starts = np.concatenate([[0], np.cumsum([len(t) for t in texts])])  # (n + 1,) code points
        cuts = np.searchsorted(starts, np.arange(1, parts) * (starts[-1] / parts))
        edges = np.unique(np.concatenate([[0], cuts, [len(texts)]]))
        tables = self._tables()

        def encode_range(d0, d1):
            data, *batch = self._batch(texts[d0:d1], allowed)
            ids, counts = _encode_documents(*batch, *tables)
            return np.split(ids, np.cumsum(counts)[:-1]), any(name in data for name in names)

        if threads == 1 or edges.size == 2:
            done = [encode_range(d0, d1) for d0, d1 in zip(edges[:-1], edges[1:])]
        else:
            with ThreadPoolExecutor(min(threads, edges.size - 1)) as pool:
                done = list(pool.map(encode_range, edges[:-1], edges[1:]))
        return [ids for part, _ in done for ids in part], any(found for _, found in done)


def _cpus() -> int:
    """The number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


_ENCODERS = {}


def _vocabulary_key(merges, pattern, special_tokens):
    """A key of bpe_encode's vocabulary arguments as given (integer merges, a pattern name,
    hashable special tokens), or None for arguments that have none (checked on every call)."""
    if not (isinstance(merges, np.ndarray) and merges.dtype.kind in "iu" and isinstance(pattern, str)
            and isinstance(special_tokens, (list, tuple, dict))):
        return None
    names = tuple(special_tokens.items()) if isinstance(special_tokens, dict) else tuple(special_tokens)
    try:
        hash(names)
    except TypeError:
        return None
    return merges.tobytes(), merges.dtype.str, merges.shape, pattern, isinstance(special_tokens, dict), names


def _encoder_for(merges, pattern, special_tokens) -> Encoder:
    """One Encoder per vocabulary, built on first use from the reference's checked vocabulary
    (bpe_vocabulary_args): a later call with the same arguments skips the check, whose verdict
    on them cannot change (building the ranks of 300 merges took 300 of a 540 us call)."""
    key = _vocabulary_key(merges, pattern, special_tokens)
    if key in _ENCODERS:
        return _ENCODERS[key]
    encoder = Encoder(*ref.bpe_vocabulary_args(merges, pattern, special_tokens), pattern)
    if key is not None:
        _ENCODERS[key] = encoder
    return encoder


def bpe_encode(text, merges, pattern="cl100k", special_tokens=(), allowed_special=(),
               disallowed_special=("all",)):
    # The reference's checks (bpe_encode_args is these two), the vocabulary's once per vocabulary.
    encoder = _encoder_for(merges, pattern, special_tokens)
    text, allowed, _ = ref.bpe_text_args(text, encoder.special, allowed_special, disallowed_special)
    return encoder.encode_allowed(text, allowed)
