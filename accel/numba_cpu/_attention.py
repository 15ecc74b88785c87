"""Blocked attention on numba-cpu, shared by sdpa, online_attention and mla (references:
llmref.ref.sdpa, llmref.ref.online_attention, llmref.ref.mla).

The math of the row kernel llmref.accel.kernels.online_attention.online_rows (which
numba-cuda and kv_cache_decode run), reorganised for a CPU: the dot products are matrix
products (BLAS, through np.matmul at the compute dtype) and only the softmax is compiled.

Per batch entry b and KV head g, the G = Hq / Hkv query heads that share K and V are stacked
into one matrix of G * T rows (a tile of T queries of each head), so every key and value row
is read once per group and the products are large. For each tile:

  1. its key range: the union of its rows' causal / window bounds (bottom-right aligned:
     query i sits at position p = i + Lk - Lq, sees j <= p, and j >= p - window + 1), cut to
     the first and last key the padding mask keeps; keys outside are never read, so a causal
     call computes about (1 + T / Lq) / 2 of the full score matrix;
  2. over that range, spans of whole key blocks (at most SPAN keys): S = Q K_span^T
     (np.matmul), then _weights turns S into the weights in place, row by row and per key
     block J_t of `block` keys: the logits scale * s_j (-inf where masked), the running max
     m_t = max(m_t-1, max_{J_t} scale s_j) (a block with no kept key leaves it), and
     w_j = exp(scale s_j - m_t) times the rescales exp(m_u-1 - m_u) of the span's later
     blocks u > t; the running sum l and the tile's output O are multiplied by all the
     span's rescales, and l gains the blocks' sums of exp(scale s_j - m_t) times their later
     rescales. That is the recurrence l' = l exp(m - m') + sum_j exp(s_j - m'),
     o' = o exp(m - m') + sum_j exp(s_j - m') v_j, each factor applied once per block;
  3. O += W V_span (np.matmul), and at the end out = O / l, lse = m + log l (a row with no
     key: out 0, lse -inf).

online_attention passes its block_size as the key block (the spans start on multiples of it,
so the blocks are the spec's J_1, J_2, ... from key 0); sdpa passes blocks as long as the
span. The exponentials of the non-positive scale s - m go through the vectorised
llmref.accel.numba_cpu._exp (float32 and float64), and every running quantity is in the
compute dtype.

Threads: BLAS's own, in the products; the compiled weights run on the calling thread. A
prange there would wake numba's threads while BLAS's still spin after each product, and on a
busy machine every such hand-over waits for a time slice: the cost is per call, not per
flop, which is also why the tiles are large (ROWS rows by SPAN keys, 4 MB at float32: few
calls) rather than cache-sized.
"""
import math

import numba
import numpy as np

from llmref.accel.numba_cpu._exp import CHUNK, bits_like, exp_block

SPAN = 1024  # keys per matrix product (rounded down to whole key blocks, at least one)
ROWS = 1024  # query rows per tile, the heads of a group together (G * T)
TILE_ELEMENTS = 1 << 20  # at most this many scores per tile (T shrinks for huge key blocks)

# Reassociation lets LLVM vectorise the maxima and sums; no flag assumes finite values
# (masked logits and the first running max are -inf).
FAST = {"reassoc", "contract", "nsz"}


@numba.njit(cache=True, fastmath={"contract"})  # no reassoc: it would undo _exp's rounding
def _exp_chunk(t, e, half, rest, n):
    """e[:n] = exp(t[:n]) for t <= 0 (t overwritten)."""
    exp_block(t, e, half, rest, n)


@numba.njit(fastmath=FAST, inline="always")
def _larger(a, b):
    return a if a > b else b


@numba.njit(fastmath=FAST, inline="always")
def _max(x):
    """max of x (n >= 1, no NaN), in eight independent lanes so that it vectorises."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = x.dtype.type(-np.inf)
    n8 = x.shape[0] // 8 * 8
    for c in range(0, n8, 8):
        a0, a1, a2, a3 = (_larger(x[c], a0), _larger(x[c + 1], a1), _larger(x[c + 2], a2),
                          _larger(x[c + 3], a3))
        a4, a5, a6, a7 = (_larger(x[c + 4], a4), _larger(x[c + 5], a5), _larger(x[c + 6], a6),
                          _larger(x[c + 7], a7))
    top = _larger(_larger(_larger(a0, a1), _larger(a2, a3)),
                  _larger(_larger(a4, a5), _larger(a6, a7)))
    for c in range(n8, x.shape[0]):
        top = _larger(x[c], top)
    return top


@numba.njit(fastmath=FAST, inline="always")
def _row_weights(row, first, last, keep, padded, scale, block, state, r, t, e, half, rest,
                 maxes, rescales, sums):
    """One row of a span: row (n,) holds the raw scores s_j, its kept keys are the columns
    [first, last) (less those keep drops, when padded), state (3, rows) the running max,
    sum and o's pending rescale of row r. On return row holds the weights."""
    n = row.shape[0]
    zero, one, neg_inf = row.dtype.type(0), row.dtype.type(1), row.dtype.type(-np.inf)
    for c in range(min(first, n)):
        row[c] = zero
    for c in range(max(last, 0), n):
        row[c] = zero
    state[2, r] = one
    if first >= last:
        return  # no key of this span: the state is unchanged
    b_first, b_last = first // block, (last - 1) // block + 1
    # 1. each block's max logit (scale > 0: max(scale s) = scale max(s), exactly)
    for blk in range(b_first, b_last):
        seg = row[max(blk * block, first):min(blk * block + block, last)]
        if padded:
            kept = keep[max(blk * block, first):min(blk * block + block, last)]
            top = neg_inf
            for c in range(seg.shape[0]):
                top = _larger(seg[c] if kept[c] else neg_inf, top)
        else:
            top = _max(seg)
        maxes[blk] = top * scale
    # 2. the running max after each block, the rescale exp(m - m') there, and the product of
    #    the later blocks' rescales, by which a block's weights are multiplied
    m = state[0, r]
    for blk in range(b_first, b_last):
        rescales[blk] = one
        if maxes[blk] != neg_inf:  # a block with no kept key leaves the state alone
            m_new = max(m, maxes[blk])
            rescales[blk] = math.exp(m - m_new)  # 0 before the row's first key (l = 0 then)
            m = m_new
        maxes[blk] = m  # now the running max the block's weights are taken against
        sums[blk] = zero
    factor = one
    for blk in range(b_last - 1, b_first - 1, -1):
        rescale = rescales[blk]
        rescales[blk] = factor  # now: the product of the later rescales
        factor *= rescale
    # 3. w_j = exp(scale s_j - m_t) times the later rescales, and the sum of each block's
    #    exp(scale s_j - m_t), in chunks for the vectorised exp
    for c0 in range(first, last, CHUNK):
        c1 = min(c0 + CHUNK, last)
        for blk in range(c0 // block, (c1 - 1) // block + 1):
            a, z = max(blk * block, c0), min(blk * block + block, c1)
            seg, tt, top = row[a:z], t[a - c0:z - c0], maxes[blk]
            for c in range(seg.shape[0]):
                tt[c] = seg[c] * scale - top
            if padded:  # a dropped key: -inf, so that no NaN comes of an all-dropped block
                kept = keep[a:z]
                for c in range(seg.shape[0]):
                    tt[c] = tt[c] if kept[c] else neg_inf
        _exp_chunk(t, e, half, rest, c1 - c0)
        for blk in range(c0 // block, (c1 - 1) // block + 1):
            a, z = max(blk * block, c0), min(blk * block + block, c1)
            seg, ee, later = row[a:z], e[a - c0:z - c0], rescales[blk]
            if padded:  # exp(-inf) must give 0 exactly, not the smallest subnormal
                kept = keep[a:z]
                for c in range(seg.shape[0]):
                    ee[c] = ee[c] if kept[c] else zero
            total = zero
            for c in range(seg.shape[0]):
                total += ee[c]
                seg[c] = ee[c] * later
            sums[blk] += total
    # 4. l in the same frame: l exp(m - m_T) + sum_t (later rescales of t) sum_{j in J_t} ...,
    #    which is l' = l exp(m - m') + sum_j exp(s_j - m') block by block
    l = state[1, r] * factor
    for blk in range(b_first, b_last):
        l += sums[blk] * rescales[blk]
    state[0, r], state[1, r], state[2, r] = m, l, factor


@numba.njit(cache=True, fastmath=FAST)
def _weights(s, j0, i0, tile, len_q, len_k, causal, window, keep, kept_first, kept_stop,
             padded, scale, block, state, o, fresh):
    """The weights of one span (step 2 above), in place in s (G*T rows, n keys from j0).

    Row r is query i0 + r % tile; keep (Lk,) is the batch entry's padding mask, which keeps
    nothing outside [kept_first, kept_stop) and is read inside only when padded. state
    (3, rows): the running max and sum, and scratch; o (rows, Dv) the unnormalised output,
    rescaled here unless fresh (nothing accumulated yet: O = W V follows)."""
    rows, n = s.shape
    t, e = np.empty(CHUNK, s.dtype), np.empty(CHUNK, s.dtype)
    half, rest = bits_like(s), bits_like(s)
    n_blocks = (n + block - 1) // block
    maxes, rescales, sums = (np.empty(n_blocks, s.dtype), np.empty(n_blocks, s.dtype),
                             np.empty(n_blocks, s.dtype))
    keep_span = keep[j0:j0 + n]
    one = s.dtype.type(1)
    for r in range(rows):
        position = i0 + r % tile + len_k - len_q  # bottom-right aligned
        hi = min(position, len_k - 1) if causal else len_k - 1
        lo = max(position - window + 1, 0) if window > 0 else 0
        first = max(max(lo, kept_first) - j0, 0)  # the row's columns: [first, last)
        last = min(min(hi + 1, kept_stop) - j0, n)
        _row_weights(s[r], first, last, keep_span, padded, scale, block, state, r, t, e, half,
                     rest, maxes, rescales, sums)
        factor = state[2, r]
        if not fresh and factor != one:
            for d in range(o.shape[1]):
                o[r, d] *= factor


@numba.njit(cache=True, fastmath=FAST)
def _finish(o, state, h0, i0, tile, out, lse):
    """out[h0 + r // tile, i0 + r % tile] = o[r] / l[r], lse = m + log l (0, -inf: no key)."""
    m, l = state[0], state[1]
    for r in range(o.shape[0]):
        h, i = h0 + r // tile, i0 + r % tile
        if l[r] > 0:
            inv = 1 / l[r]
            for d in range(o.shape[1]):
                out[h, i, d] = o[r, d] * inv
            lse[h, i] = m[r] + math.log(l[r])
        else:
            for d in range(o.shape[1]):
                out[h, i, d] = 0
            lse[h, i] = -np.inf


def _kept_range(keep_b):
    """First and last+1 kept key of one batch entry, and whether any key inside is dropped."""
    kept = np.flatnonzero(keep_b)
    if kept.size == 0:
        return 0, 0, False
    first, stop = int(kept[0]), int(kept[-1]) + 1
    return first, stop, kept.size != stop - first


def blocked_attention(q, k, v, keep_key, causal, window, scale, block=0):
    """(out (B, Hq, Lq, Dv), lse (B, Hq, Lq)) at q's dtype (the compute dtype; q, k, v
    contiguous). block: keys per online-softmax block, the spans start on its multiples;
    0 = one block per span (sdpa)."""
    batch, n_q_heads, len_q, dim = q.shape
    n_kv_heads, len_k, dim_v = k.shape[1], k.shape[2], v.shape[3]
    group = n_q_heads // n_kv_heads
    acc = q.dtype
    out = np.zeros((batch, n_q_heads, len_q, dim_v), dtype=acc)
    lse = np.full((batch, n_q_heads, len_q), -np.inf, dtype=acc)
    if len_q == 0 or len_k == 0:
        return out, lse
    span = SPAN if block == 0 else block * max(1, SPAN // block)
    width = min(span, len_k)  # the widest product
    tile = max(1, min(len_q, ROWS // group, TILE_ELEMENTS // (group * width)))
    buffer = np.empty(group * tile * width, dtype=acc)
    scale = acc.type(scale)
    for b in range(batch):
        kept_first, kept_stop, padded = _kept_range(keep_key[b])
        keep_b = keep_key[b]
        for g in range(n_kv_heads):
            heads = slice(g * group, (g + 1) * group)
            k_g, v_g = k[b, g], v[b, g]
            for i0 in range(0, len_q, tile):
                rows_i = min(tile, len_q - i0)
                p_first, p_last = i0 + len_k - len_q, i0 + rows_i - 1 + len_k - len_q
                hi = min(p_last, len_k - 1) if causal else len_k - 1
                lo = max(p_first - window + 1, 0) if window > 0 else 0
                lo, stop = max(lo, kept_first), min(hi + 1, kept_stop)
                if lo >= stop:
                    continue  # no row of the tile has a key: out 0, lse -inf as set
                q_t = q[b, heads, i0:i0 + rows_i].reshape(group * rows_i, dim)
                rows = q_t.shape[0]
                state = np.empty((3, rows), dtype=acc)  # running max, sum; scratch
                state[0], state[1] = -np.inf, 0
                o = np.empty((rows, dim_v), dtype=acc)
                start = lo if block == 0 else lo - lo % block
                for j0 in range(start, stop, span):
                    n = min(span, stop - j0)
                    s = buffer[:rows * n].reshape(rows, n)
                    np.matmul(q_t, k_g[j0:j0 + n].T, out=s)
                    fresh = j0 == start
                    _weights(s, j0, i0, rows_i, len_q, len_k, causal, window, keep_b,
                             kept_first, kept_stop, padded, scale, block if block else n,
                             state, o, fresh)
                    if fresh:
                        np.matmul(s, v_g[j0:j0 + n], out=o)
                    else:
                        o += s @ v_g[j0:j0 + n]
                _finish(o, state, g * group, i0, rows_i, out[b], lse[b])
    return out, lse
