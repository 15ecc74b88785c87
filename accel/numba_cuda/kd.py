"""Distillation losses and their gradients as a numba.cuda kernel: one thread per token row.

Each thread makes the same passes as the numba-cpu kernel (log-sum-exp of the student and the
teacher, the loss, the gradient row); the host gathers valid rows and averages.
"""
import math

import numpy as np
from numba import cuda

from llmref.accel._guard import check_guards, guarded_host_buffer, interior
from llmref.accel._host import widen
from llmref.backends import simulated
from llmref.ref.kd import (KINDS, kd_attention_args, kd_feature_args, kd_loss_args,
                           valid_tokens)

THREADS = 32 if simulated() else 128


@cuda.jit(device=True)
def _logsumexp(zs, r, scale):
    m = -math.inf
    for v in range(zs.shape[1]):
        m = max(m, zs[r, v] * scale)
    s = 0.0
    for v in range(zs.shape[1]):
        s += math.exp(zs[r, v] * scale - m)
    return m + math.log(s)


@cuda.jit(device=True)
def _logaddexp(a, b):
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


@cuda.jit
def _kd_rows(zs, zt, labels, kind, temperature, alpha, beta, losses, grad):
    r = cuda.grid(1)
    if r >= zs.shape[0]:
        return
    inv_t = 1.0 / temperature
    log_beta = math.log(beta) if beta > 0 else 0.0
    log_1m_beta = math.log(1.0 - beta) if beta < 1 else 0.0
    lse_s = _logsumexp(zs, r, inv_t)
    lse_t = _logsumexp(zt, r, inv_t)
    loss = 0.0
    qg = 0.0
    for v in range(zs.shape[1]):
        lq = zs[r, v] * inv_t - lse_s
        lp = zt[r, v] * inv_t - lse_t
        if kind <= 1:
            loss += math.exp(lp) * (lp - lq)
        elif kind == 2:
            loss += math.exp(lq) * (lq - lp)
        else:
            lm = _logaddexp(lp + log_beta, lq + log_1m_beta)
            loss += beta * math.exp(lp) * (lp - lm) + (1.0 - beta) * math.exp(lq) * (lq - lm)
            qg += math.exp(lq) * (1.0 - beta) * (lq - lm)
    lse_1 = _logsumexp(zs, r, 1.0)
    if kind == 0:
        loss = alpha * temperature * temperature * loss + (1.0 - alpha) * (lse_1 - zs[r, labels[r]])
    losses[r] = loss
    for v in range(zs.shape[1]):
        lq = zs[r, v] * inv_t - lse_s
        lp = zt[r, v] * inv_t - lse_t
        q = math.exp(lq)
        if kind == 0:
            hard = math.exp(zs[r, v] - lse_1) - (1.0 if v == labels[r] else 0.0)
            grad[r, v] = alpha * temperature * (q - math.exp(lp)) + (1.0 - alpha) * hard
        elif kind == 1:
            grad[r, v] = (q - math.exp(lp)) * inv_t
        elif kind == 2:
            grad[r, v] = q * (lq - lp - loss) * inv_t
        else:
            lm = _logaddexp(lp + log_beta, lq + log_1m_beta)
            grad[r, v] = q * ((1.0 - beta) * (lq - lm) - qg) * inv_t


def kd_loss(student_logits, teacher_logits, labels, mask, kind="hinton", temperature=2.0,
            alpha=0.5, beta=0.5, ignore_index=-100):
    z_s, z_t, labels, mask = kd_loss_args(student_logits, teacher_logits, labels, mask, kind,
                                          temperature, alpha, beta, ignore_index)
    if kind == "jsd" and beta in (0.0, 1.0):  # the endpoints are the KL limits
        kind = "forward_kl" if beta == 0 else "reverse_kl"
    vocab = z_s.shape[-1]
    valid = valid_tokens(labels, mask, ignore_index).reshape(-1)  # (N,)
    zs = widen(z_s.reshape(-1, vocab)[valid])  # (n_valid, V)
    zt = widen(z_t.reshape(-1, vocab)[valid])
    n = zs.shape[0]
    scalar = zs.dtype.type
    loss_buf = guarded_host_buffer(n, zs.dtype)
    grad_buf = guarded_host_buffer(zs.size, zs.dtype)
    d_loss, d_grad = cuda.to_device(loss_buf), cuda.to_device(grad_buf)
    blocks = (n + THREADS - 1) // THREADS
    _kd_rows[blocks, THREADS](cuda.to_device(zs), cuda.to_device(zt),
                              cuda.to_device(np.ascontiguousarray(labels.reshape(-1)[valid])),
                              KINDS.index(kind), scalar(temperature), scalar(alpha), scalar(beta),
                              interior(d_loss, n), interior(d_grad, zs.size).reshape(zs.shape))
    loss_buf, grad_buf = d_loss.copy_to_host(), d_grad.copy_to_host()
    check_guards(loss_buf, n, "numba-cuda kd_loss (loss)")
    check_guards(grad_buf, zs.size, "numba-cuda kd_loss (grad)")
    grad = np.zeros((valid.size, vocab), dtype=zs.dtype)
    grad[valid] = interior(grad_buf, zs.size).reshape(zs.shape) / scalar(n)
    return {"loss": np.full(1, interior(loss_buf, n).sum() / scalar(n), dtype=z_s.dtype),
            "grad": grad.reshape(z_s.shape).astype(z_s.dtype)}


@cuda.jit
def _residual(h_s, h_t, w, residual):
    """residual[i, o] = sum_d w[o, d] h_s[i, d] - h_t[i, o]; one thread per (i, o)."""
    i, o = cuda.grid(2)
    if i < residual.shape[0] and o < residual.shape[1]:
        s = 0.0
        for d in range(h_s.shape[1]):
            s += w[o, d] * h_s[i, d]
        residual[i, o] = s - h_t[i, o]


@cuda.jit
def _hint_grads(h_s, w, residual, grad_student, grad_projection):
    """grad_student[i, d] = sum_o r[i, o] w[o, d] / N and grad_projection[o, d] =
    sum_i r[i, o] h_s[i, d] / N; thread (a, d) writes row a of whichever exists."""
    a, d = cuda.grid(2)
    n = h_s.shape[0]
    if d >= h_s.shape[1]:
        return
    if a < n:
        s = 0.0
        for o in range(w.shape[0]):
            s += residual[a, o] * w[o, d]
        grad_student[a, d] = s / n
    if a < w.shape[0]:
        s = 0.0
        for i in range(n):
            s += residual[i, a] * h_s[i, d]
        grad_projection[a, d] = s / n


def _grid2(n, m):
    """At least one block per axis (a zero-size grid is not a valid launch); the kernels
    check their bounds."""
    side = 8 if simulated() else 16
    return (max(1, (n + side - 1) // side), max(1, (m + side - 1) // side)), (side, side)


def kd_feature(student_features, teacher_features, projection):
    h_s, h_t, w = kd_feature_args(student_features, teacher_features, projection)
    hc, tc, wc = widen(h_s), widen(h_t), widen(w)
    n, ds = hc.shape
    dt = tc.shape[1]
    d_res = cuda.device_array((n, dt), dtype=hc.dtype)
    d_h, d_w = cuda.to_device(hc), cuda.to_device(wc)
    _residual[_grid2(n, dt)](d_h, cuda.to_device(tc), d_w, d_res)
    gs_buf, gw_buf = guarded_host_buffer(n * ds, hc.dtype), guarded_host_buffer(dt * ds, hc.dtype)
    d_gs, d_gw = cuda.to_device(gs_buf), cuda.to_device(gw_buf)
    _hint_grads[_grid2(max(n, dt), ds)](d_h, d_w, d_res, interior(d_gs, n * ds).reshape(n, ds),
                                        interior(d_gw, dt * ds).reshape(dt, ds))
    gs_buf, gw_buf = d_gs.copy_to_host(), d_gw.copy_to_host()
    check_guards(gs_buf, n * ds, "numba-cuda kd_feature (grad_student)")
    check_guards(gw_buf, dt * ds, "numba-cuda kd_feature (grad_projection)")
    residual = d_res.copy_to_host()
    dtype = h_s.dtype
    return {"loss": np.full(1, (residual * residual).sum() / (2 * n), dtype=dtype),
            "grad_student": interior(gs_buf, n * ds).reshape(n, ds).astype(dtype),
            "grad_projection": interior(gw_buf, dt * ds).reshape(dt, ds).astype(dtype)}


@cuda.jit
def _attention_rows(a_s, a_t, kl, row_loss, grad):
    """One thread per map row: its loss term sum and its gradient entries."""
    r = cuda.grid(1)
    rows, k = a_s.shape
    if r >= rows:
        return
    loss = 0.0
    for j in range(k):
        if kl:
            if a_t[r, j] > 0:
                loss += a_t[r, j] * (math.log(a_t[r, j]) - math.log(a_s[r, j]))
                grad[r, j] = -a_t[r, j] / a_s[r, j] / rows
            else:
                grad[r, j] = 0.0
        else:
            diff = a_s[r, j] - a_t[r, j]
            loss += diff * diff
            grad[r, j] = 2.0 * diff / (rows * k)
    row_loss[r] = loss


def kd_attention(student_attention, teacher_attention, kind="mse"):
    a_s, a_t = kd_attention_args(student_attention, teacher_attention, kind)
    shape = a_s.shape
    s2 = widen(a_s.reshape(-1, shape[-1]))  # (B*H*L, K)
    t2 = widen(a_t.reshape(-1, shape[-1]))
    rows = s2.shape[0]
    grad_buf = guarded_host_buffer(s2.size, s2.dtype)
    d_grad = cuda.to_device(grad_buf)
    d_loss = cuda.device_array(rows, dtype=s2.dtype)
    _attention_rows[(rows + THREADS - 1) // THREADS, THREADS](
        cuda.to_device(s2), cuda.to_device(t2), kind == "kl", d_loss,
        interior(d_grad, s2.size).reshape(s2.shape))
    grad_buf = d_grad.copy_to_host()
    check_guards(grad_buf, s2.size, "numba-cuda kd_attention (grad)")
    total = d_loss.copy_to_host().sum()
    loss = total / rows if kind == "kl" else total / s2.size
    return {"loss": np.full(1, loss, dtype=a_s.dtype),
            "grad": interior(grad_buf, s2.size).reshape(shape).astype(a_s.dtype)}
