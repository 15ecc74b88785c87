"""Distillation losses and their gradients on numba-cpu (reference: llmref.ref.kd). Checked by
the reference's kd_*_args; float16/bfloat16 inputs are widened to float32 and every output
rounded once.

kd_loss: the token rows are spread over threads (prange; llmref.accel.numba_cpu._threads)
and read in place, each row writing its own row of the gradient: an invalid token (mask False
or ignore_index) gets a zero row, a valid one its gradient already divided by n_valid, so no
valid-row gather, no scatter and no rescaled copy are made (the reference's valid_rows /
token_mean). The Hinton, forward-KL and reverse-KL rows are written here so LLVM vectorises
them, in float64:

    m_s = max z_s, m_t = max z_t               one pass over both rows
    e_s = exp(z_s / T - m_s / T), e_t = ...,    one pass: exps of t <= 0 in blocks of CHUNK
    [e_1 = exp(z_s - m_s) for hinton]           (llmref.accel.numba_cpu._exp), kept in (V,)
                                                rows, and their sums S_s, S_t, S_1
    q = e_s / S_s, p = e_t / S_t, log q = z_s / T - lse, ...
                                                one pass: the KL and the gradient row
                                                (reverse KL: one more, for the loss first)

so each element takes three exponentials (two without the hard term), none recomputed
(llmref.accel.kernels.kd.kd_rows has the formulas).

The generalized JSD at 0 < beta < 1 runs the shared row loop (llmref.accel.kernels.kd.kd_rows,
numba-cuda's too) on each of its rows, in the same prange. kd_feature's three matrix products
are NumPy's BLAS at the compute dtype. kd_attention's rows are dealt to parallel tasks: an MSE
row is one vectorised pass (_mse_row) that also counts negative entries, and a NaN or inf
shows in its loss, so the maps' values are read once (a hit sends the call back to
kd_attention_args for its error: where it finds none, the squares overflowed and the loss
stands); a KL row runs the shared row loop, its maps checked first.
"""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import kd as kernels
from llmref.accel.numba_cpu._exp import CHUNK, block_sum, exp_nonpositive
from llmref.accel.numba_cpu._threads import prange_body, threaded_loop
from llmref.ref.kd import KINDS, kd_attention_args, kd_feature_args, kd_loss_args, valid_tokens

_kd_rows = numba.njit(cache=True)(kernels.kd_rows)
_attention_rows = numba.njit(cache=True)(kernels.attention_rows)
ATTENTION_TASKS = 64  # parallel tasks over kd_attention's map rows


@numba.njit(cache=True, fastmath={"reassoc", "nsz"})
def _row_maxes(zs, zt, r):
    """(max_v zs[r, v], max_v zt[r, v]); the order of comparisons is free (no NaN reaches here)."""
    ms = -np.inf
    mt = -np.inf
    for v in range(zs.shape[1]):
        a = np.float64(zs[r, v])
        b = np.float64(zt[r, v])
        ms = a if a > ms else ms
        mt = b if b > mt else mt
    return ms, mt


@numba.njit(cache=True, fastmath={"contract"})  # fused multiply-adds in exp's polynomial
def _exp_terms(zs, zt, r, inv_t, ms, mt, m1, hinton, ea, eb, ec):
    """ea[v] = exp(zs[r, v] / T - ms), eb[v] = exp(zt[r, v] / T - mt) and, for hinton,
    ec[v] = exp(zs[r, v] - m1) (every exponent <= 0); returns their three sums (0 for ec
    otherwise)."""
    vocab = zs.shape[1]
    ta, tb, tc = np.empty(CHUNK), np.empty(CHUNK), np.empty(CHUNK)
    half, rest = np.empty(CHUNK, np.int64), np.empty(CHUNK, np.int64)
    ss = 0.0
    st = 0.0
    s1 = 0.0
    for j0 in range(0, vocab, CHUNK):
        w = min(CHUNK, vocab - j0)
        zs_block, zt_block = zs[r, j0:], zt[r, j0:]  # indices from 0: no wrap-around test
        for i in range(w):
            x = np.float64(zs_block[i])
            ta[i] = x * inv_t - ms
            tb[i] = np.float64(zt_block[i]) * inv_t - mt
            tc[i] = x - m1
        exp_nonpositive(ta, ea[j0:j0 + w], half, rest, w)
        ss += block_sum(ea[j0:j0 + w], w)
        exp_nonpositive(tb, eb[j0:j0 + w], half, rest, w)
        st += block_sum(eb[j0:j0 + w], w)
        if hinton:
            exp_nonpositive(tc, ec[j0:j0 + w], half, rest, w)
            s1 += block_sum(ec[j0:j0 + w], w)
    return ss, st, s1


@numba.njit(cache=True, fastmath={"reassoc", "nsz", "contract"})
def _reverse_kl(zs, zt, r, inv_t, lse_s, lse_t, inv_ss, ea):
    """KL(q || p) = sum_v q_v (log q_v - log p_v) of row r, q_v = ea[v] / ss."""
    kl = 0.0
    for v in range(zs.shape[1]):
        lq = np.float64(zs[r, v]) * inv_t - lse_s
        lp = np.float64(zt[r, v]) * inv_t - lse_t
        kl += ea[v] * inv_ss * (lq - lp)
    return kl


@numba.njit(cache=True, fastmath={"reassoc", "nsz", "contract"})
def _grad_row(zs, zt, r, label, kind, inv_t, lse_s, lse_t, inv_ss, inv_st, inv_s1, alpha,
              temperature, reverse, inv_n, ea, eb, ec, grad):
    """grad[r] = dl_r / dz_s / n_valid from q = ea / ss, p = eb / st (and softmax(z_s) =
    ec / s1 for hinton); returns KL(p || q) for kinds 0 and 1 (0 for kind 2, whose loss
    `reverse` the gradient takes)."""
    kl = 0.0
    if kind != 2:  # hinton: the soft term scaled by alpha T plus the hard term; forward KL: 1 / T
        hinton = kind == 0
        soft = alpha * temperature * inv_n if hinton else inv_t * inv_n
        hard = (1.0 - alpha) * inv_n
        for v in range(zs.shape[1]):
            q = ea[v] * inv_ss
            p = eb[v] * inv_st
            lq = np.float64(zs[r, v]) * inv_t - lse_s
            lp = np.float64(zt[r, v]) * inv_t - lse_t
            kl += p * (lp - lq)
            grad[r, v] = soft * (q - p)
            if hinton:
                grad[r, v] += hard * (ec[v] * inv_s1 - (1.0 if v == label else 0.0))
    else:
        scale = inv_t * inv_n
        for v in range(zs.shape[1]):
            lq = np.float64(zs[r, v]) * inv_t - lse_s
            lp = np.float64(zt[r, v]) * inv_t - lse_t
            grad[r, v] = ea[v] * inv_ss * (lq - lp - reverse) * scale
    return kl


@threaded_loop()
def _kd_loss_rows(zs, zt, labels, valid, kind, temperature, alpha, beta, n_valid, runs, losses,
                  grad):
    """losses[r] = l_r (0 for an invalid row) and grad[r] = dl_r / dz_s / n_valid (a zero row
    for an invalid one) of every token row r of zs, zt (N, V); kind indexes KINDS (3: the
    generalized JSD at 0 < beta < 1). The rows go to the threads in `runs` runs of
    consecutive rows, each run with its own three (V,) rows of exponentials."""
    rows, vocab = zs.shape
    inv_t = 1.0 / temperature
    inv_n = 1.0 / n_valid
    runs = max(1, min(rows, runs))
    per_run = (rows + runs - 1) // runs
    for run in numba.prange(runs):
        ea, eb, ec = np.empty(vocab), np.empty(vocab), np.empty(vocab if kind == 0 else 1)
        for r in range(run * per_run, min(rows, (run + 1) * per_run)):
            if not valid[r]:
                losses[r] = 0.0
                grad[r, :] = 0.0
                continue
            if kind == 3:  # the shared row loop on row r alone
                _kd_rows(zs, zt, labels, kind, temperature, alpha, beta, r, rows, losses, grad)
                for v in range(vocab):
                    grad[r, v] = grad[r, v] / n_valid
                continue
            zmax_s, zmax_t = _row_maxes(zs, zt, r)
            ms, mt = zmax_s * inv_t, zmax_t * inv_t  # max (z / T) = (max z) / T, T > 0
            ss, st, s1 = _exp_terms(zs, zt, r, inv_t, ms, mt, zmax_s, kind == 0, ea, eb, ec)
            lse_s, lse_t = ms + math.log(ss), mt + math.log(st)
            lse_1 = zmax_s + math.log(s1) if kind == 0 else 0.0
            inv_s1 = 1.0 / s1 if kind == 0 else 0.0
            reverse = _reverse_kl(zs, zt, r, inv_t, lse_s, lse_t, 1.0 / ss, ea) if kind == 2 else 0.0
            kl = _grad_row(zs, zt, r, labels[r], kind, inv_t, lse_s, lse_t, 1.0 / ss, 1.0 / st,
                           inv_s1, alpha, temperature, reverse, inv_n, ea, eb, ec, grad)
            if kind == 0:
                losses[r] = (alpha * temperature * temperature * kl
                             + (1.0 - alpha) * (lse_1 - np.float64(zs[r, labels[r]])))
            else:
                losses[r] = reverse if kind == 2 else kl


def kd_loss(student_logits, teacher_logits, labels, mask, kind="hinton", temperature=2.0,
            alpha=0.5, beta=0.5, ignore_index=-100):
    # The spec's signature and its one checker, as in every backend (the kernels differ below).
    z_s, z_t, labels, mask = kd_loss_args(student_logits, teacher_logits, labels, mask, kind,
                                          temperature, alpha, beta, ignore_index)
    vocab = z_s.shape[-1]
    valid = np.ascontiguousarray(valid_tokens(labels, mask, ignore_index).reshape(-1))  # (N,)
    zs, zt = widen(z_s).reshape(-1, vocab), widen(z_t).reshape(-1, vocab)  # (N, V), no copy
    k = KINDS.index(kind)
    if k == 3 and beta in (0.0, 1.0):  # the endpoints are the KL limits (ref jsd_token)
        k = 1 if beta == 0.0 else 2
    n_valid = int(valid.sum())
    losses, grad = np.empty(zs.shape[0]), np.empty_like(zs)
    _kd_loss_rows(zs.size, zs, zt, np.ascontiguousarray(labels.reshape(-1), dtype=np.int64), valid, k,
                  float(temperature), float(alpha), float(beta), float(n_valid),
                  4 * numba.get_num_threads(), losses, grad)
    dtype = z_s.dtype
    return {"loss": np.full(1, losses.sum() / n_valid, dtype=dtype),
            "grad": grad.reshape(z_s.shape).astype(dtype, copy=False)}


def kd_feature(student_features, teacher_features, projection):
    h_s, h_t, w = kd_feature_args(student_features, teacher_features, projection)
    hc, tc, wc = widen(h_s), widen(h_t), widen(w)  # (N, Ds), (N, Dt), (Dt, Ds)
    n = hc.dtype.type(hc.shape[0])
    residual = hc @ wc.T  # (N, Dt)
    residual -= tc
    flat = residual.reshape(-1)
    loss = np.dot(flat, flat) / (2 * n)
    residual /= n  # both gradients carry the 1/N: one pass over r instead of one over each
    grad_student = residual @ wc  # (N, Ds)
    grad_projection = residual.T @ hc  # (Dt, Ds)
    dtype = h_s.dtype
    return {"loss": np.full(1, loss, dtype=dtype),
            "grad_student": grad_student.astype(dtype, copy=False),
            "grad_projection": grad_projection.astype(dtype, copy=False)}


@prange_body(fastmath={"reassoc", "nsz"})  # the row's sum in any order
def _mse_row(a_s, a_t, scale, grad):
    """(sum_j (a_s[j] - a_t[j])^2, the number of negative entries in a_s and a_t), each square
    in the compute dtype and summed in float64 (as kernels.attention_rows sums), and
    grad[j] = scale (a_s[j] - a_t[j]), scale = 2 / (R K): one vectorised pass over the row.
    The shared loop's 2 diff / (R K) divides every element and branches on the kind inside
    the row, which kept it scalar."""
    loss = 0.0
    negative = 0
    for j in range(a_s.shape[0]):
        diff = a_s[j] - a_t[j]
        loss += diff * diff
        grad[j] = diff * scale
        negative += (a_s[j] < 0) + (a_t[j] < 0)
    return loss, negative


@threaded_loop()
def _attention_row_tasks(a_s, a_t, kl, row_loss, grad):
    """The map rows dealt round-robin to ATTENTION_TASKS tasks (task t takes rows t, t + TASKS,
    ...: each row is contiguous, so no two tasks share a cache line of a row they write): the
    KL rows through the shared row loop, the MSE rows through _mse_row. Returns how many MSE
    rows hold a negative entry or have a loss that is not finite (a NaN or inf in the maps,
    or squares that overflowed)."""
    unusual = 0
    for task in numba.prange(ATTENTION_TASKS):  # uint64 in the parfor body: as int64, one compile
        if kl:
            _attention_rows(a_s, a_t, kl, np.int64(task), ATTENTION_TASKS, row_loss, grad)
        else:
            scale = 2.0 / a_s.size
            for r in range(np.int64(task), a_s.shape[0], ATTENTION_TASKS):
                loss, negative = _mse_row(a_s[r], a_t[r], scale, grad[r])
                row_loss[r] = loss
                unusual += negative > 0 or not abs(loss) < np.inf
    return unusual


def kd_attention(student_attention, teacher_attention, kind="mse"):
    # the MSE rows read the maps' values themselves (_mse_row); the KL rows are checked first
    a_s, a_t = kd_attention_args(student_attention, teacher_attention, kind, values=kind != "mse")
    s2 = widen(a_s.reshape(-1, a_s.shape[-1]))  # (B*H*L, K)
    row_loss, grad = np.empty(s2.shape[0], dtype=s2.dtype), np.empty_like(s2)
    if _attention_row_tasks(s2.size, s2, widen(a_t.reshape(s2.shape)), kind == "kl", row_loss, grad):
        kd_attention_args(student_attention, teacher_attention, kind)  # the error; else an overflow
    loss = row_loss.sum() / (s2.shape[0] if kind == "kl" else s2.size)
    return {"loss": np.full(1, loss, dtype=a_s.dtype), "grad": grad.reshape(a_s.shape).astype(a_s.dtype, copy=False)}
