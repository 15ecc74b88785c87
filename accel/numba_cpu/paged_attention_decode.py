"""Paged decode attention on numba-cpu (reference: llmref.ref.paged_attention_decode).

Why this loop is not shared with numba-cuda (llmref.accel.numba_cuda.paged_attention_decode):
the two walk the same sums in the order each machine reads memory best. Here one CPU thread
takes a sequence (prange over the batch; llmref.accel.numba_cpu._threads) and reads each of
its blocks front to back, in the pool's own order (token, KV head, dim): every key and value
row is read once, for all the query heads of its GQA group, while it is in cache. Walking one
KV head at a time instead reads 512-byte pieces 4 kB apart from randomly placed blocks, which
the prefetcher cannot follow (3.6x slower at 8 x 2048 tokens, GQA 32/8, d = 128). The GPU
backend gives every (sequence, query head) a thread block whose threads split the head
dimension (and the cupy backend adds split-K over the context). The math is the same online
softmax either way.

Per sequence and per block: the scores s[h, t] of every query head against the block's
tokens, then one online-softmax rescale per head (running max m, running sum l, running
weighted sum acc), then the value rows weighted by p = exp(s - m). Each query vector loaded
meets two key rows (_dots_4x2: four heads by two tokens, eight sums in registers), and each
value row loaded meets four accumulator rows (_add_scaled_4x4), where one key row and one
accumulator row at a time had the loads, not the multiply-adds, set the pace. The block's
exponentials are exp_block's vector loop, not a libm call each. And while a block is read,
the one AHEAD blocks on in the table is hinted into L2 (_prefetch): blocks lie at random in
the pool, and the hardware prefetcher, which stops at each 4 kB page, stalled on DRAM at
every new one. On one thread, bench shape (8 x 4096 tokens, GQA 32/8, d = 128, a 268 MB
pool), medians of 12 interleaved calls: 19.1 ms, against 25.4 ms for a key row and an
accumulator row at a time, libm exponentials and no hints (the hints alone gave 11%); a plain
read of the same blocks in the same order took 11.7 ms.

Checked by the reference's paged_attention_decode_args. Arithmetic is float32 for
float16/bfloat16 inputs, and the result is rounded once to the input dtype. A bfloat16 pool is read in place: its uint16 bit patterns
are the upper halves of the float32s of the same values, so the kernel widens each element as
it loads it (12.7 ms on the bench shape, against 63.7 ms when the blocks the batch reads were
first copied out widened). A float16 pool is widened first, only the blocks the batch reads
(referenced_blocks).

The pool's values are checked by the kernel's own reading of them, not by a pass of their
own (which took 37 ms of a 60 ms step on the bench shape): with q finite, a NaN or inf in a
key row makes its score NaN or inf, and one in a value row makes the output NaN or inf
(0 * inf is NaN too). Where either shows, check_read_rows finds the row and raises the
reference's InputError naming k_cache or v_cache; where it finds none, the scores overflowed
and the output stands, as any float32 kernel's would.
"""
import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cpu._exp import bits_like, exp_block
from llmref.accel.numba_cpu._prefetch import prefetch_row
from llmref.accel.numba_cpu._threads import threaded_loop
from llmref.ref.paged_attention_decode import check_read_rows, paged_attention_decode_args

# Reassociation lets LLVM vectorise the dot products and row updates; no flag assumes
# finite values (the running max starts at -inf).
FAST = {"reassoc", "contract"}
AHEAD = 2  # blocks ahead of the one being read that are hinted into L2


def _value(row, e):
    """row[e] as a float: a bfloat16 pool arrives as its uint16 bit patterns, which are the
    upper half of the float32 of the same value."""


@overload(_value, inline="always")
def _value_impl(row, e):
    if isinstance(row.dtype, types.Integer):
        return lambda row, e: np.uint32(np.uint32(row[e]) << 16).view(np.float32)
    return lambda row, e: row[e]


@numba.njit(fastmath=FAST, inline="always")
def _dot(a, b):
    """sum_e a[e] b[e] (b a pool row)."""
    acc = a.dtype.type(0.0)
    for e in range(a.shape[0]):
        acc += a[e] * _value(b, e)
    return acc


@numba.njit(fastmath=FAST, inline="always")
def _dots_4(a0, a1, a2, a3, b):
    """(sum_e a0[e] b[e], ..., sum_e a3[e] b[e]): four query heads against one key row read once."""
    c0 = c1 = c2 = c3 = a0.dtype.type(0.0)
    for e in range(b.shape[0]):
        be = _value(b, e)
        c0 += a0[e] * be
        c1 += a1[e] * be
        c2 += a2[e] * be
        c3 += a3[e] * be
    return c0, c1, c2, c3


@numba.njit(fastmath=FAST, inline="always")
def _dots_4x2(a0, a1, a2, a3, b0, b1):
    """_dots_4 against two key rows b0, b1 at once: each query vector loaded once for both."""
    c0 = c1 = c2 = c3 = d0 = d1 = d2 = d3 = a0.dtype.type(0.0)
    for e in range(b0.shape[0]):
        be, bf = _value(b0, e), _value(b1, e)
        c0 += a0[e] * be
        c1 += a1[e] * be
        c2 += a2[e] * be
        c3 += a3[e] * be
        d0 += a0[e] * bf
        d1 += a1[e] * bf
        d2 += a2[e] * bf
        d3 += a3[e] * bf
    return c0, c1, c2, c3, d0, d1, d2, d3


@numba.njit(fastmath=FAST, inline="always")
def _add_scaled(p, x, y):
    """y += p x (x a pool row)."""
    for e in range(y.shape[0]):
        y[e] += p * _value(x, e)


@numba.njit(fastmath=FAST, inline="always")
def _add_scaled_4(p0, p1, p2, p3, x0, x1, x2, x3, y):
    """y += p0 x0 + p1 x1 + p2 x2 + p3 x3: four value rows into one accumulator row, stored once."""
    for e in range(y.shape[0]):
        y[e] += (p0 * _value(x0, e) + p1 * _value(x1, e)) + (p2 * _value(x2, e) + p3 * _value(x3, e))


@numba.njit(fastmath=FAST, inline="always")
def _add_scaled_4x4(p, h, t, x0, x1, x2, x3, acc):
    """acc[h + i] += sum_j p[h + i, t + j] x_j for i, j < 4: four value rows into four
    accumulator rows, each row loaded once for the four it meets."""
    p00, p01, p02, p03 = p[h, t], p[h, t + 1], p[h, t + 2], p[h, t + 3]
    p10, p11, p12, p13 = p[h + 1, t], p[h + 1, t + 1], p[h + 1, t + 2], p[h + 1, t + 3]
    p20, p21, p22, p23 = p[h + 2, t], p[h + 2, t + 1], p[h + 2, t + 2], p[h + 2, t + 3]
    p30, p31, p32, p33 = p[h + 3, t], p[h + 3, t + 1], p[h + 3, t + 2], p[h + 3, t + 3]
    y0, y1, y2, y3 = acc[h], acc[h + 1], acc[h + 2], acc[h + 3]
    for e in range(y0.shape[0]):
        v0, v1, v2, v3 = _value(x0, e), _value(x1, e), _value(x2, e), _value(x3, e)
        y0[e] += (p00 * v0 + p01 * v1) + (p02 * v2 + p03 * v3)
        y1[e] += (p10 * v0 + p11 * v1) + (p12 * v2 + p13 * v3)
        y2[e] += (p20 * v0 + p21 * v1) + (p22 * v2 + p23 * v3)
        y3[e] += (p30 * v0 + p31 * v1) + (p32 * v2 + p33 * v3)


@numba.njit(fastmath=FAST, inline="always")
def _scale(c, y):
    """y *= c."""
    for e in range(y.shape[0]):
        y[e] *= c


@numba.njit(fastmath=FAST, inline="always")
def _scores(q, b, k_row, group_start, group, scale, s, t):
    """s[h, t] = scale q[b, h] . k_row for the group's heads, four at a time, then one by one."""
    fours = group_start + group - group % 4
    for h in range(group_start, fours, 4):
        c0, c1, c2, c3 = _dots_4(q[b, h], q[b, h + 1], q[b, h + 2], q[b, h + 3], k_row)
        s[h, t], s[h + 1, t], s[h + 2, t], s[h + 3, t] = c0 * scale, c1 * scale, c2 * scale, c3 * scale
    for h in range(fours, group_start + group):
        s[h, t] = _dot(q[b, h], k_row) * scale


@numba.njit(fastmath=FAST, inline="always")
def _scores_2(q, b, k0, k1, group_start, group, scale, s, t):
    """_scores of tokens t and t + 1 (key rows k0, k1) at once, for a group of 4j heads."""
    for h in range(group_start, group_start + group, 4):
        c0, c1, c2, c3, d0, d1, d2, d3 = _dots_4x2(q[b, h], q[b, h + 1], q[b, h + 2], q[b, h + 3], k0, k1)
        s[h, t], s[h + 1, t], s[h + 2, t], s[h + 3, t] = c0 * scale, c1 * scale, c2 * scale, c3 * scale
        s[h, t + 1], s[h + 1, t + 1], s[h + 2, t + 1], s[h + 3, t + 1] = d0 * scale, d1 * scale, d2 * scale, d3 * scale


@numba.njit(fastmath=FAST, inline="always")
def _finite(s, tokens):
    """Whether s[h, t] is finite for every head h and t < tokens."""
    for h in range(s.shape[0]):
        for t in range(tokens):
            if not abs(s[h, t]) < np.inf:
                return False
    return True


@threaded_loop(fastmath=FAST)
def _paged_decode(q, k_cache, v_cache, block_tables, seq_lens, scale, out, unusual):
    """out[b, h] = softmax(scale * K q) V over the tokens reached through block_tables[b];
    unusual[b] = whether a score or an output of sequence b is not finite."""
    batch, hq, d = q.shape
    block_size, hkv = k_cache.shape[1], k_cache.shape[2]
    group = hq // hkv
    for b in numba.prange(batch):
        n = seq_lens[b]
        last = (n - 1) // block_size  # the sequence's last logical block
        m = np.full(hq, -np.inf, dtype=q.dtype)
        l = np.zeros(hq, dtype=q.dtype)
        acc = np.zeros((hq, d), dtype=q.dtype)
        s = np.empty((hq, block_size), dtype=q.dtype)  # the block's scores, less the running max
        p = np.empty((hq, block_size), dtype=q.dtype)  # exp of those
        half, rest = bits_like(s), bits_like(s)  # exp_block's scratch
        for logical in range(last + 1):
            block = block_tables[b, logical]
            ahead = block_tables[b, min(logical + AHEAD, last)]  # hinted into L2 while this one is read
            tokens = min(block_size, n - logical * block_size)
            pairs = tokens - tokens % 2 if group % 4 == 0 else 0
            for t in range(0, pairs, 2):  # key rows in memory order (token, KV head), two tokens at a time...
                for g in range(hkv):
                    for u in range(2):
                        prefetch_row(k_cache[ahead, t + u, g])
                        prefetch_row(v_cache[ahead, t + u, g])
                    _scores_2(q, b, k_cache[block, t, g], k_cache[block, t + 1, g], g * group, group, scale, s, t)
            for t in range(pairs, tokens):  # ...then one by one
                for g in range(hkv):
                    prefetch_row(k_cache[ahead, t, g])
                    prefetch_row(v_cache[ahead, t, g])
                    _scores(q, b, k_cache[block, t, g], g * group, group, scale, s, t)
            if not _finite(s, tokens):  # a NaN or inf in a key row, or scores that overflowed
                unusual[b] = True
            for h in range(hq):
                block_max = m[h]
                for t in range(tokens):
                    block_max = max(block_max, s[h, t])
                correction = math.exp(m[h] - block_max)  # rescale what was accumulated so far
                l[h] *= correction
                _scale(correction, acc[h])
                for t in range(tokens):
                    s[h, t] -= block_max
                exp_block(s[h], p[h], half, rest, tokens)  # a NaN stays NaN: see the test of overflow
                for t in range(tokens):
                    l[h] += p[h, t]
                m[h] = block_max
            fours = tokens - tokens % 4
            for t in range(0, fours, 4):  # value rows in memory order, four tokens at a time...
                for g in range(hkv):
                    v0, v1, v2, v3 = v_cache[block, t, g], v_cache[block, t + 1, g], v_cache[block, t + 2, g], v_cache[block, t + 3, g]
                    quads = g * group + group - group % 4
                    for h in range(g * group, quads, 4):  # ...into four heads at a time...
                        _add_scaled_4x4(p, h, t, v0, v1, v2, v3, acc)
                    for h in range(quads, (g + 1) * group):
                        _add_scaled_4(p[h, t], p[h, t + 1], p[h, t + 2], p[h, t + 3], v0, v1, v2, v3, acc[h])
            for t in range(fours, tokens):  # ...then one by one
                for g in range(hkv):
                    v_row = v_cache[block, t, g]  # (d,)
                    for h in range(g * group, (g + 1) * group):
                        _add_scaled(p[h, t], v_row, acc[h])
        for h in range(hq):
            for e in range(d):
                out[b, h, e] = acc[h, e] / l[h]
                if not abs(out[b, h, e]) < np.inf:  # also a NaN or inf in a value row
                    unusual[b] = True


def paged_attention_decode(q, k_cache, v_cache, block_tables, seq_lens, scale=0.0):
    q, k_cache, v_cache, block_tables, seq_lens, scale = paged_attention_decode_args(
        q, k_cache, v_cache, block_tables, seq_lens, scale, pool_values=False)
    if q.shape[0] == 0:  # no sequence: an empty output
        return q.copy()
    tables, seq_lens = block_tables.astype(np.int64), seq_lens.astype(np.int64)
    if k_cache.dtype.name == "bfloat16":  # read in place, as the bit patterns the kernel widens
        wk, wv = np.ascontiguousarray(k_cache).view(np.uint16), np.ascontiguousarray(v_cache).view(np.uint16)
    else:
        if compute_dtype(k_cache.dtype) != k_cache.dtype:  # a float16 pool is widened...
            blocks, tables = referenced_blocks(tables, seq_lens, k_cache.shape[1])
            k_cache, v_cache = k_cache[blocks], v_cache[blocks]  # ...only where the batch reads it
        wk, wv = widen(k_cache), widen(v_cache)
    wq = widen(q)
    out, unusual = np.empty_like(wq), np.zeros(q.shape[0], dtype=np.bool_)
    # K elements read; one sequence is one iteration of the prange, which no thread can share
    work = int(seq_lens.sum()) * wk.shape[2] * wk.shape[3] if q.shape[0] > 1 else 0
    _paged_decode(work, wq, wk, wv, tables, seq_lens, wq.dtype.type(scale), out, unusual)
    if unusual.any():  # NaN or inf in a row read is an InputError; else an honest overflow
        check_read_rows("k_cache", k_cache, tables, seq_lens)
        check_read_rows("v_cache", v_cache, tables, seq_lens)
    return out.astype(q.dtype, copy=False)


def referenced_blocks(block_tables, seq_lens, block_size):
    """(blocks, tables): the pool blocks the sequences read, sorted and unique, and the block
    tables renumbered into them (tables[b, j] = the index in `blocks` of block_tables[b, j]
    for every j < ceil(seq_lens[b] / block_size); the entries past that are never read).

    A serving pool holds every sequence's blocks, not only this batch's: widening the whole
    pool to float32 on each call would cost time in proportion to the pool, not to the
    tokens attended."""
    read = np.arange(block_tables.shape[1]) < -(-seq_lens[:, None] // block_size)  # (B, MB)
    blocks = np.unique(block_tables[read])
    tables = np.zeros_like(block_tables)
    tables[read] = np.searchsorted(blocks, block_tables[read])
    return blocks, tables
