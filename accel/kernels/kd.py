"""Distillation losses and their gradients (reference: llmref.ref.kd), shared by numba-cpu and
numba-cuda (see llmref.accel.kernels).

Rows (token rows of kd_loss, map rows of kd_attention) and elements (of kd_feature's
products) are visited as first, first + step, ...: a numba-cuda thread the ones of its
grid-stride (thread index, grid size), whose host gathers the valid token rows and takes the
means (llmref.ref.kd.valid_rows, token_mean). numba-cpu walks all of kd_attention's rows
(0, 1) and runs kd_rows on one row at a time (r, rows) for the generalized JSD only; its other
losses have their own vectorised row passes and kd_feature is BLAS
(llmref.accel.numba_cpu.kd).
"""
import math


def kd_rows(zs, zt, labels, kind, temperature, alpha, beta, first, step, losses, grad):
    """losses[r] = l_r and grad[r] = dl_r / dz_s for the visited valid token rows r of zs, zt
    (n, V); kind indexes llmref.ref.kd.KINDS (0 hinton, 1 forward_kl, 2 reverse_kl, 3 jsd,
    whose endpoints beta = 0 and 1 are forward and reverse KL). With s = z / T,
    log q = s_s - lse(s_s) and log p = s_t - lse(s_t):

      forward_kl  l = sum_v p (log p - log q);            dl/dz_v = (q_v - p_v) / T
      reverse_kl  l = sum_v q (log q - log p);            dl/dz_v = q_v (log q_v - log p_v - l) / T
      jsd         log m = logaddexp(log p + log beta, log q + log(1 - beta)),
                  l = beta KL(p || m) + (1 - beta) KL(q || m),
                  g_v = (1 - beta)(log q_v - log m_v);     dl/dz_v = q_v (g_v - sum_u q_u g_u) / T
      hinton      l = alpha T^2 KL(p || q) + (1 - alpha)(lse(z_s) - z_s[y]),
                  dl/dz_v = alpha T (q_v - p_v) + (1 - alpha)(softmax(z_s)_v - [v = y])
    """
    if kind == 3 and beta == 0.0:
        kind = 1
    elif kind == 3 and beta == 1.0:
        kind = 2
    vocab = zs.shape[1]
    inv_t = 1.0 / temperature
    log_beta = math.log(beta) if beta > 0 else 0.0
    log_1m_beta = math.log(1.0 - beta) if beta < 1 else 0.0
    for r in range(first, zs.shape[0], step):
        # log-sum-exps of the softened student and teacher rows, and of the student at T = 1
        ms = -math.inf
        mt = -math.inf
        m1 = -math.inf
        for v in range(vocab):
            ms = max(ms, zs[r, v] * inv_t)
            mt = max(mt, zt[r, v] * inv_t)
            m1 = max(m1, zs[r, v])
        ss = 0.0
        st = 0.0
        s1 = 0.0
        for v in range(vocab):
            ss += math.exp(zs[r, v] * inv_t - ms)
            st += math.exp(zt[r, v] * inv_t - mt)
            if kind == 0:
                s1 += math.exp(zs[r, v] - m1)
        lse_s = ms + math.log(ss)
        lse_t = mt + math.log(st)
        lse_1 = m1 + math.log(s1) if kind == 0 else 0.0
        # the loss, and for jsd sum_u q_u g_u
        loss = 0.0
        qg = 0.0
        for v in range(vocab):
            lq = zs[r, v] * inv_t - lse_s
            lp = zt[r, v] * inv_t - lse_t
            if kind == 2:
                loss += math.exp(lq) * (lq - lp)
            elif kind == 3:
                a = lp + log_beta
                b = lq + log_1m_beta
                lm = max(a, b) + math.log1p(math.exp(-abs(a - b)))
                loss += beta * math.exp(lp) * (lp - lm) + (1.0 - beta) * math.exp(lq) * (lq - lm)
                qg += math.exp(lq) * (1.0 - beta) * (lq - lm)
            else:
                loss += math.exp(lp) * (lp - lq)
        if kind == 0:
            loss = alpha * temperature * temperature * loss + (1.0 - alpha) * (lse_1 - zs[r, labels[r]])
        losses[r] = loss
        # the gradient row
        for v in range(vocab):
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
                a = lp + log_beta
                b = lq + log_1m_beta
                lm = max(a, b) + math.log1p(math.exp(-abs(a - b)))
                grad[r, v] = q * ((1.0 - beta) * (lq - lm) - qg) * inv_t


def hint_residuals(h_s, h_t, w, first, step, residual):
    """residual[i, o] = sum_d w[o, d] h_s[i, d] - h_t[i, o] for the visited of the N*Dt
    elements; h_s (N, Ds), h_t (N, Dt), w (Dt, Ds)."""
    width = residual.shape[1]
    for e in range(first, residual.shape[0] * width, step):
        i, o = e // width, e % width
        s = 0.0
        for d in range(h_s.shape[1]):
            s += w[o, d] * h_s[i, d]
        residual[i, o] = s - h_t[i, o]


def hint_grads(h_s, w, residual, first, step, grad_student, grad_projection):
    """grad_student[i, d] = sum_o r[i, o] w[o, d] / N and grad_projection[o, d] =
    sum_i r[i, o] h_s[i, d] / N for the visited of the (N + Dt) * Ds elements: row a < N of
    grad_student, then row a - N of grad_projection."""
    n, dim = h_s.shape
    for e in range(first, (n + w.shape[0]) * dim, step):
        a, d = e // dim, e % dim
        s = 0.0
        if a < n:
            for o in range(w.shape[0]):
                s += residual[a, o] * w[o, d]
            grad_student[a, d] = s / n
        else:
            for i in range(n):
                s += residual[i, a - n] * h_s[i, d]
            grad_projection[a - n, d] = s / n


def attention_rows(a_s, a_t, kl, first, step, row_loss, grad):
    """row_loss[r] = the loss terms of map row r, summed, and grad[r] for the visited rows of
    the maps (R, K):

      mse  terms (A_s - A_t)^2,                   grad 2 (A_s - A_t) / (R K)
      kl   terms A_t (log A_t - log A_s), A_t > 0,  grad -A_t / A_s / R   (0 where A_t = 0)
    """
    rows, k = a_s.shape
    for r in range(first, rows, step):
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
