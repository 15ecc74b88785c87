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
- Otherwise (`_w4a16_rows`: M > 1, or groups that split a word): each column n first
  dequantises its packed row into two buffers in the compute dtype, which all M rows then use,

      lo[j] = (q[n, 2j] - z) * s,   hi[j] = (q[n, 2j + 1] - z) * s   (s, z of j's group),

  each weight the exact (q - z) rounded once by the product with s, as the reference's; then
  every row m of x takes one long dot product with them, y[m, n] = sum_j x[m, 2j] lo[j] +
  x[m, 2j + 1] hi[j], with no per-group sum in its way.
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
def _dot_even_odd(x_even, x_odd, lo, hi):
    """sum_j x_even[j] lo[j] + x_odd[j] hi[j]."""
    acc = lo.dtype.type(0.0)
    for j in range(lo.shape[0]):
        acc += x_even[j] * lo[j] + x_odd[j] * hi[j]
    return acc


@threaded_loop(fastmath=FAST)
def _w4a16_rows(x_even, x_odd, w_packed, scales, zeros, group_size, y):
    half = group_size // 2  # bytes per group
    for n in numba.prange(w_packed.shape[0]):
        lo = np.empty(w_packed.shape[1], dtype=y.dtype)  # (K/2,) weights of the even columns
        hi = np.empty(w_packed.shape[1], dtype=y.dtype)  # (K/2,) and of the odd ones
        for g in range(scales.shape[1]):
            part = slice(g * half, (g + 1) * half)
            _dequantize_group(w_packed[n, part], zeros[n, g], scales[n, g], lo[part], hi[part])
        for m in range(x_even.shape[0]):
            y[m, n] = _dot_even_odd(x_even[m], x_odd[m], lo, hi)


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
        _w4a16_rows(work, np.ascontiguousarray(wx[:, 0::2]), np.ascontiguousarray(wx[:, 1::2]),  # (M, K/2) each
                    w_packed, scales, zeros, group_size, y)
    return y.astype(x.dtype, copy=False)
