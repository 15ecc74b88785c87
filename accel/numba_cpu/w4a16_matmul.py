"""The W4A16 matmul as numba.njit loops, threaded over output columns (reference:
llmref.ref.w4a16_matmul). The argument checks are the reference's (w4a16_matmul_args).

Why these loops are not llmref.accel.kernels.w4a16_matmul's (which numba-cuda runs): a CUDA
thread looks each nibble up in a 16-entry table of its group's weights, while on a CPU a
table lookup per nibble is a gather that stops LLVM from vectorising. Codes become floats
through int32 (int64 to float has no AVX2 instruction, which would keep a loop scalar), and
every weight is the exact integer q - z until a scale multiplies it. Two loops:

- M = 1 (a decode GEMV) with groups of whole 32-bit words (G a multiple of 8): every weight
  is used once, so it is never stored. The packed row is read as little-endian uint32 words,
  eight codes each (code i of word j is input feature 8j + i), and x arrives as the matching
  eight planes x_planes[i, j] = x[8j + i], so one vector load of words feeds eight contiguous
  streams of x with shifts and masks only (no byte shuffles):

      y[n] = sum_g s[n, g] * sum_(word j of group g) sum_i x_planes[i, j] (code_i(word[n, j]) - z[n, g])

  `_w4a16_gemv`, when a group is whole vectors of eight words (G a multiple of 64): the words
  are viewed as (N, groups, vectors per group, 8 lanes). The loop over the 8 lanes has a
  constant trip count, so LLVM unrolls it and its SLP vectoriser packs the lanes into one
  AVX2 vector: each group's scale and zero-point are scalars broadcast once, and the 8 lane
  sums stay in registers across the whole row. SLP needs the arrays not to overlap, so a
  task's columns are a function of their own (_gemv_columns, a prange_body) in both builds.
  `_w4a16_gemv_spread` otherwise (G = 32): each word's scale and zero-point are first spread
  over a row buffer, so that one vector loop covers the row (a 4-lane _w4a16_gemv for
  G = 32 stayed scalar: SLP did not pack it, 7.2 against 2.3 ms). Measured in one process
  on the bench shape (4096 x 4096, G = 128, two cores): 0.65-0.76 ms a call for _w4a16_gemv
  against 0.80-0.93 ms for _w4a16_gemv_spread, whose buffers store 8 bytes per 4-byte word
  read (0.20-0.27 ms of its time).

  What bounds _w4a16_gemv on one core is the vector units, not memory: its inner loop is
  about 40 vector instructions per 32 packed bytes (7 shifts, 7 masks, 8 zero-point
  subtractions, 8 int-to-float conversions, 10 multiplies or multiply-adds; inspect_asm),
  and it ran at about 14 cycles per 32 bytes (1.07-1.15 ms a call on the bench shape, clock
  3.5 GHz from a loop of dependent adds), near what four vector pipes issue with the
  multiplies on two of them; a plain read of the 8 MB of words took 0.12 ms. The same loop on
  512-bit vectors, half the instructions, ran no faster (1.05-1.08 ms: this AMD core splits
  them in two), and codes made floats by their bits, (2^23 + q) - (2^23 + z) exactly, ran
  7% faster (0.995-1.02 ms), too little to pay for the bit-cast intrinsic it needs.
- Otherwise (`_w4a16_tiles`: M > 1, or groups that split a word): K is cut into blocks of
  BLOCK packed bytes, and x into the matching even and odd feature blocks (x_even[m, j] =
  x[m, 2j], x_odd[m, j] = x[m, 2j + 1], zero past K). For each block and each pair of
  columns n, n + 1, the pair's packed bytes are dequantised into buffers in the compute dtype,

      lo[j] = (q[n, 2j] - z) * s,   hi[j] = (q[n, 2j + 1] - z) * s   (s, z of j's group),

  each weight the exact (q - z) rounded once by the product with s, as the reference's; then
  every four rows of x take their eight dot products with the pair at once (_dot_4x2), and
  add them to y. Twelve vector loads feed sixteen fused multiply-adds, where one dot product
  at a time loaded two for two; and a block of 16 rows of x (32 KiB) stays in the L1 cache
  for all of a task's columns, where whole rows (256 KiB at K = 4096) came from L2 for each
  column. Measured on one core (4096 x 4096, G = 128, M = 16): 8.7 ms a call against 14.0 ms
  for one column at a time over whole rows; of the 8.7, dequantising takes 1.6 ms, and the
  tiles run about 14 multiply-adds a cycle, of the 16 that two 256-bit FMA units issue.
"""
import sys

import numba
import numpy as np

from llmref.accel._host import compute_dtype, widen
from llmref.accel.numba_cpu._threads import prange_body, threaded_loop
from llmref.ref.w4a16_matmul import w4a16_matmul_args

FAST = {"reassoc", "contract", "nsz"}  # reassociation for the sums; nothing assumes finiteness
TASKS = 16  # parallel tasks the output columns are dealt to (each keeps its own row buffers)
WORD = 8  # int4 codes in a uint32 word of the packed row
LANES = 8  # uint32 words in an AVX2 vector
BLOCK = 256  # packed bytes of K (512 features) a tile covers: 16 rows of x even and odd, 32 KiB


@numba.njit(fastmath=FAST, inline="always")
def _centred(word, i, zf, y):
    """Code i of a packed uint32 word minus the zero-point zf, exact, in y's float dtype."""
    return y.dtype.type(np.int32(np.int32((word >> (4 * i)) & 15) - zf))


@numba.njit(fastmath=FAST, inline="always")
def _codes_4(xv, at, a, word, zf, y):
    """sum_i xv[i][at] (code_i(word) - zf) over codes i = a..a+3 of one word (at: its index)."""
    g, v, lane = at
    return ((xv[a, g, v, lane] * _centred(word, a, zf, y) + xv[a + 1, g, v, lane] * _centred(word, a + 1, zf, y))
            + (xv[a + 2, g, v, lane] * _centred(word, a + 2, zf, y) + xv[a + 3, g, v, lane] * _centred(word, a + 3, zf, y)))


@prange_body(fastmath=FAST)
def _gemv_columns(xv, w, scales, zeros, y, n0, n1):
    """y[0, n] for the columns n0 <= n < n1 (_w4a16_gemv's arrays, already viewed by vector)."""
    n_groups, vectors = w.shape[1], w.shape[2]
    acc = np.empty((2, LANES), y.dtype)  # codes 0-3 and codes 4-7 of each lane
    for n in range(n0, n1):
        for lane in range(LANES):
            acc[0, lane] = acc[1, lane] = 0.0
        for g in range(n_groups):
            s, zf = scales[n, g], np.int32(zeros[n, g])
            for v in range(vectors):
                for lane in range(LANES):
                    word, at = w[n, g, v, lane], (g, v, lane)
                    acc[0, lane] += s * _codes_4(xv, at, 0, word, zf, y)
                    acc[1, lane] += s * _codes_4(xv, at, 4, word, zf, y)
        total = y.dtype.type(0.0)
        for lane in range(LANES):
            total += acc[0, lane] + acc[1, lane]
        y[0, n] = total


@threaded_loop(fastmath=FAST)
def _w4a16_gemv(x_planes, words, scales, zeros, y):
    """The GEMV for groups of whole vectors of eight words (G a multiple of 64)."""
    n_cols, n_groups = scales.shape
    vectors = words.shape[1] // n_groups // LANES  # vectors of 8 words per group
    w = words.reshape(n_cols, n_groups, vectors, LANES)  # no index below is negative, so none is
    xv = x_planes.reshape(WORD, n_groups, vectors, LANES)  # tested for wrap-around: SLP packs the lanes
    for task in numba.prange(TASKS):
        _gemv_columns(xv, w, scales, zeros, y, task * n_cols // TASKS, (task + 1) * n_cols // TASKS)


@threaded_loop(fastmath=FAST)
def _w4a16_gemv_spread(x_planes, words, scales, zeros, group_size, y):
    """The GEMV for groups of whole words that are not whole vectors of eight (G = 32, say): each
    word's scale and zero-point are spread over a row buffer, so one loop covers the row."""
    per = group_size // WORD  # words per group
    n_cols, n_words = words.shape
    for task in numba.prange(TASKS):
        s_word = np.empty(n_words, y.dtype)  # the scale of each word's group, for one row
        z_word = np.empty(n_words, np.int32)  # and its zero-point
        for n in range(task * n_cols // TASKS, (task + 1) * n_cols // TASKS):
            for g in range(scales.shape[1]):
                s, zf = scales[n, g], np.int32(zeros[n, g])
                for j in range(per):  # (a loop from g * per would test each index's sign: 1.6x slower)
                    s_word[g * per + j], z_word[g * per + j] = s, zf
            # four partial sums, so that no one chain of fused multiply-adds sets the pace
            a0 = a1 = a2 = a3 = y.dtype.type(0.0)
            for j in range(n_words):
                word, s, zf = words[n, j], s_word[j], z_word[j]
                a0 += s * (x_planes[0, j] * _centred(word, 0, zf, y) + x_planes[1, j] * _centred(word, 1, zf, y))
                a1 += s * (x_planes[2, j] * _centred(word, 2, zf, y) + x_planes[3, j] * _centred(word, 3, zf, y))
                a2 += s * (x_planes[4, j] * _centred(word, 4, zf, y) + x_planes[5, j] * _centred(word, 5, zf, y))
                a3 += s * (x_planes[6, j] * _centred(word, 6, zf, y) + x_planes[7, j] * _centred(word, 7, zf, y))
            y[0, n] = (a0 + a1) + (a2 + a3)


@numba.njit(fastmath=FAST, inline="always")
def _dequantize_group(row, z, s, lo, hi):
    """lo[j], hi[j] = (low, high nibble of row[j] - z) * s for every byte of the group."""
    zf = lo.dtype.type(np.int32(z))
    for j in range(row.shape[0]):
        byte = row[j]
        lo[j] = (lo.dtype.type(np.int32(byte & 15)) - zf) * s
        hi[j] = (lo.dtype.type(np.int32(byte >> 4)) - zf) * s


@numba.njit(fastmath=FAST, inline="always")
def _dequantize_block(w_packed, scales, zeros, half, n, j0, lo, hi):
    """lo[j], hi[j] for the bytes j0 + j of column n's packed row, j < lo.shape[0], through
    every group the block overlaps (half: bytes per group); zero past the row's end."""
    j1 = min(j0 + lo.shape[0], w_packed.shape[1])
    for g in range(j0 // half, (j1 - 1) // half + 1):
        a, b = max(j0, g * half), min(j1, (g + 1) * half)
        _dequantize_group(w_packed[n, a:b], zeros[n, g], scales[n, g], lo[a - j0:b - j0], hi[a - j0:b - j0])
    for j in range(j1 - j0, lo.shape[0]):  # not a stale weight: one that overflowed to inf
        lo[j] = hi[j] = 0.0                  # times the zero padding of x would be nan


@numba.njit(fastmath=FAST, inline="always")
def _dot_even_odd(x_even, x_odd, lo, hi):
    """sum_j x_even[j] lo[j] + x_odd[j] hi[j]."""
    acc = lo.dtype.type(0.0)
    for j in range(lo.shape[0]):
        acc += x_even[j] * lo[j] + x_odd[j] * hi[j]
    return acc


@numba.njit(fastmath=FAST, inline="always")
def _dot_4x2(xe, xo, m, lo, hi, y, n):
    """y[m + r, n + c] += _dot_even_odd(xe[m + r], xo[m + r], lo[c], hi[c]) for r < 4, c < 2:
    eight sums in registers, each x and weight vector loaded once for the 4 or 2 it feeds."""
    e0, e1, e2, e3, o0, o1, o2, o3 = xe[m], xe[m + 1], xe[m + 2], xe[m + 3], xo[m], xo[m + 1], xo[m + 2], xo[m + 3]
    l0, l1, h0, h1 = lo[0], lo[1], hi[0], hi[1]
    a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = y.dtype.type(0.0)
    for j in range(l0.shape[0]):
        a00 += e0[j] * l0[j] + o0[j] * h0[j]
        a01 += e0[j] * l1[j] + o0[j] * h1[j]
        a10 += e1[j] * l0[j] + o1[j] * h0[j]
        a11 += e1[j] * l1[j] + o1[j] * h1[j]
        a20 += e2[j] * l0[j] + o2[j] * h0[j]
        a21 += e2[j] * l1[j] + o2[j] * h1[j]
        a30 += e3[j] * l0[j] + o3[j] * h0[j]
        a31 += e3[j] * l1[j] + o3[j] * h1[j]
    y[m, n] += a00
    y[m, n + 1] += a01
    y[m + 1, n] += a10
    y[m + 1, n + 1] += a11
    y[m + 2, n] += a20
    y[m + 2, n + 1] += a21
    y[m + 3, n] += a30
    y[m + 3, n + 1] += a31


@prange_body(fastmath=FAST)
def _tile_columns(xe_blocks, xo_blocks, w_packed, scales, zeros, half, y, n0, n1):
    """y[:, n] += every block's products for the columns n0 <= n < n1 (y starts at zero)."""
    n_blocks, n_rows, block = xe_blocks.shape
    lo = np.empty((2, block), y.dtype)  # two columns' dequantised even weights for one block
    hi = np.empty((2, block), y.dtype)  # and odd ones
    for jb in range(n_blocks):
        xe, xo = xe_blocks[jb], xo_blocks[jb]  # (M, block) each
        for n in range(n0, n1, 2):
            pair = min(2, n1 - n)
            for c in range(pair):
                _dequantize_block(w_packed, scales, zeros, half, n + c, jb * block, lo[c], hi[c])
            tiled = 0 if pair < 2 else n_rows // 4 * 4  # rows taken four at a time
            for m in range(0, tiled, 4):
                _dot_4x2(xe, xo, m, lo, hi, y, n)
            for m in range(tiled, n_rows):
                for c in range(pair):
                    y[m, n + c] += _dot_even_odd(xe[m], xo[m], lo[c], hi[c])


@threaded_loop(fastmath=FAST)
def _w4a16_tiles(xe_blocks, xo_blocks, w_packed, scales, zeros, group_size, y):
    """y (M, N) += x W^T for x's even and odd features cut into K blocks (_blocks), the
    output columns dealt to TASKS parallel tasks of _tile_columns (y starts at zero)."""
    n_cols = y.shape[1]
    for task in numba.prange(TASKS):
        _tile_columns(xe_blocks, xo_blocks, w_packed, scales, zeros, group_size // 2, y,
                      task * n_cols // TASKS, (task + 1) * n_cols // TASKS)


def _blocks(x_half):
    """(M, K/2) -> (blocks, M, BLOCK), zero-padded past K/2: blocks[b, m, j] = x_half[m, b BLOCK + j]."""
    m, half_k = x_half.shape
    n_blocks = -(-half_k // BLOCK)
    padded = np.zeros((m, n_blocks * BLOCK), x_half.dtype)
    padded[:, :half_k] = x_half
    return np.ascontiguousarray(padded.reshape(m, n_blocks, BLOCK).transpose(1, 0, 2))


def _gemv_fits(x, group_size) -> bool:
    """_w4a16_gemv's conditions: one row, groups of whole words, and little-endian words."""
    return x.shape[0] == 1 and group_size % WORD == 0 and sys.byteorder == "little"


def w4a16_matmul(x, w_packed, scales, zeros, group_size=128):
    x, w_packed, scales, zeros, group_size = w4a16_matmul_args(x, w_packed, scales, zeros, group_size)
    wx = widen(x)  # (M, K)
    y = np.empty((x.shape[0], w_packed.shape[0]), compute_dtype(x.dtype))
    scales = widen(scales.astype(x.dtype, copy=False))  # rounded to x's dtype, as deployed
    w_packed, zeros = np.ascontiguousarray(w_packed), np.ascontiguousarray(zeros)
    work = y.size * x.shape[1]  # multiply-adds
    if _gemv_fits(x, group_size):
        x_planes = np.ascontiguousarray(wx.reshape(-1, WORD).T)  # (8, K/8): x_planes[i, j] = x[0, 8j + i]
        words = w_packed.view(np.uint32)  # (N, K/8)
        if group_size % (WORD * LANES) == 0:
            _w4a16_gemv(work, x_planes, words, scales, zeros, y)
        else:
            _w4a16_gemv_spread(work, x_planes, words, scales, zeros, group_size, y)
    else:
        y[:] = 0.0  # the tiles add each block's products in
        _w4a16_tiles(work, _blocks(wx[:, 0::2]), _blocks(wx[:, 1::2]), w_packed, scales, zeros, group_size, y)
    return y.astype(x.dtype, copy=False)
