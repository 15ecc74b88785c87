"""Distillation losses and their gradients as numba.njit row kernels (reference: llmref.ref.kd).

One token row at a time: two max/log-sum-exp passes give log q and log p on the fly, a third
pass accumulates the loss, a fourth writes the gradient row.
"""
import math

import numba
import numpy as np

from llmref.accel._host import widen
from llmref.ref.kd import (KINDS, kd_attention_args, kd_feature_args, kd_loss_args,
                           valid_tokens)


@numba.njit(cache=True)
def _logsumexp(x, scale):
    """(m, log sum_v exp(x_v * scale - m)),  m = max_v x_v * scale."""
    m = -np.inf
    for v in range(x.shape[0]):
        m = max(m, x[v] * scale)
    s = 0.0
    for v in range(x.shape[0]):
        s += math.exp(x[v] * scale - m)
    return m, math.log(s)


@numba.njit(cache=True)
def _kd_rows(zs, zt, labels, kind, temperature, alpha, beta, losses, grad):
    """losses[r] = l_r and grad[r] = dl_r/dz_s for each valid row r (kinds as in KINDS)."""
    inv_t = 1.0 / temperature
    log_beta = math.log(beta) if beta > 0 else 0.0
    log_1m_beta = math.log(1.0 - beta) if beta < 1 else 0.0
    for r in range(zs.shape[0]):
        ms, ls = _logsumexp(zs[r], inv_t)
        mt, lt = _logsumexp(zt[r], inv_t)
        loss = 0.0
        for v in range(zs.shape[1]):
            lq = zs[r, v] * inv_t - ms - ls
            lp = zt[r, v] * inv_t - mt - lt
            if kind == 0 or kind == 1:
                loss += math.exp(lp) * (lp - lq)
            elif kind == 2:
                loss += math.exp(lq) * (lq - lp)
            else:
                lm = np.logaddexp(lp + log_beta, lq + log_1m_beta)
                loss += beta * math.exp(lp) * (lp - lm) + (1.0 - beta) * math.exp(lq) * (lq - lm)
        qg = 0.0  # sum_u q_u g_u for the JSD softmax backward
        if kind == 3:
            for v in range(zs.shape[1]):
                lq = zs[r, v] * inv_t - ms - ls
                lp = zt[r, v] * inv_t - mt - lt
                lm = np.logaddexp(lp + log_beta, lq + log_1m_beta)
                qg += math.exp(lq) * (1.0 - beta) * (lq - lm)
        if kind == 0:
            m1, l1 = _logsumexp(zs[r], 1.0)
            loss = alpha * temperature * temperature * loss + (1.0 - alpha) * (m1 + l1 - zs[r, labels[r]])
        losses[r] = loss
        for v in range(zs.shape[1]):
            lq = zs[r, v] * inv_t - ms - ls
            lp = zt[r, v] * inv_t - mt - lt
            q = math.exp(lq)
            if kind == 0:
                hard = math.exp(zs[r, v] - m1 - l1) - (1.0 if v == labels[r] else 0.0)
                grad[r, v] = alpha * temperature * (q - math.exp(lp)) + (1.0 - alpha) * hard
            elif kind == 1:
                grad[r, v] = (q - math.exp(lp)) * inv_t
            elif kind == 2:
                grad[r, v] = q * (lq - lp - loss) * inv_t
            else:
                lm = np.logaddexp(lp + log_beta, lq + log_1m_beta)
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
    losses = np.empty(zs.shape[0], dtype=zs.dtype)
    rows = np.empty_like(zs)
    _kd_rows(zs, zt, labels.reshape(-1)[valid], KINDS.index(kind), float(temperature),
             float(alpha), float(beta), losses, rows)
    n_valid = zs.dtype.type(zs.shape[0])
    grad = np.zeros((valid.size, vocab), dtype=zs.dtype)
    grad[valid] = rows / n_valid
    return {"loss": np.full(1, losses.sum() / n_valid, dtype=z_s.dtype),
            "grad": grad.reshape(z_s.shape).astype(z_s.dtype)}


@numba.njit(cache=True)
def _hint_loss(h_s, h_t, w, residual, grad_student, grad_projection):
    """r = h_s W^T - h_t; loss = sum r^2 / 2N; grads r W / N and r^T h_s / N."""
    n, ds = h_s.shape
    dt = h_t.shape[1]
    loss = 0.0
    for i in range(n):
        for o in range(dt):
            s = 0.0
            for d in range(ds):
                s += w[o, d] * h_s[i, d]
            residual[i, o] = s - h_t[i, o]
            loss += residual[i, o] * residual[i, o]
    for i in range(n):
        for d in range(ds):
            s = 0.0
            for o in range(dt):
                s += residual[i, o] * w[o, d]
            grad_student[i, d] = s / n
    for o in range(dt):
        for d in range(ds):
            s = 0.0
            for i in range(n):
                s += residual[i, o] * h_s[i, d]
            grad_projection[o, d] = s / n
    return loss / (2 * n)


def kd_feature(student_features, teacher_features, projection):
    h_s, h_t, w = kd_feature_args(student_features, teacher_features, projection)
    hc, h_t, w = widen(h_s), widen(h_t), widen(w)
    gs, gw = np.empty_like(hc), np.empty_like(w)
    loss = _hint_loss(hc, h_t, w, np.empty_like(h_t), gs, gw)
    dtype = h_s.dtype
    return {"loss": np.full(1, loss, dtype=dtype), "grad_student": gs.astype(dtype),
            "grad_projection": gw.astype(dtype)}


@numba.njit(cache=True)
def _attention_loss(a_s, a_t, kl, grad):
    """Flattened maps (rows, K): mse or KL(A_t || A_s) per spec; returns the loss."""
    rows, k = a_s.shape
    loss = 0.0
    for r in range(rows):
        for j in range(k):
            if kl:
                if a_t[r, j] > 0:
                    loss += a_t[r, j] * (math.log(a_t[r, j]) - math.log(a_s[r, j]))
                grad[r, j] = -a_t[r, j] / a_s[r, j] / rows if a_t[r, j] > 0 else 0.0
            else:
                diff = a_s[r, j] - a_t[r, j]
                loss += diff * diff
                grad[r, j] = 2.0 * diff / (rows * k)
    return loss / rows if kl else loss / (rows * k)


def kd_attention(student_attention, teacher_attention, kind="mse"):
    a_s, a_t = kd_attention_args(student_attention, teacher_attention, kind)
    shape = a_s.shape
    s2 = widen(a_s.reshape(-1, shape[-1]))  # (B*H*L, K)
    t2 = widen(a_t.reshape(-1, shape[-1]))
    grad = np.empty_like(s2)
    loss = _attention_loss(s2, t2, kind == "kl", grad)
    return {"loss": np.full(1, loss, dtype=a_s.dtype), "grad": grad.reshape(shape).astype(a_s.dtype)}
