"""Distillation losses and their gradients on numba-cpu (reference: llmref.ref.kd): the
shared row and element loops of llmref.accel.kernels.kd over all rows; the valid token rows
are gathered and averaged by the reference's valid_rows / token_mean. Checked by the
reference's kd_*_args; float16/bfloat16 inputs are widened to float32 and every output
rounded once.
"""
import numba
import numpy as np

from llmref.accel._host import widen
from llmref.accel.kernels import kd as kernels
from llmref.ref.kd import (KINDS, kd_attention_args, kd_feature_args, kd_loss_args, token_mean,
                           valid_rows)

_kd_rows = numba.njit(cache=True)(kernels.kd_rows)
_hint_residuals = numba.njit(cache=True)(kernels.hint_residuals)
_hint_grads = numba.njit(cache=True)(kernels.hint_grads)
_attention_rows = numba.njit(cache=True)(kernels.attention_rows)


def kd_loss(student_logits, teacher_logits, labels, mask, kind="hinton", temperature=2.0,
            alpha=0.5, beta=0.5, ignore_index=-100):
    # The spec's signature and its one checker, as in every backend (the kernels differ below).
    z_s, z_t, labels, mask = kd_loss_args(student_logits, teacher_logits, labels, mask, kind,
                                          temperature, alpha, beta, ignore_index)
    valid, zs, zt, y = valid_rows(z_s, z_t, labels, mask, ignore_index)
    zs, zt = widen(zs), widen(zt)  # (n_valid, V)
    losses, grad = np.empty(zs.shape[0], dtype=zs.dtype), np.empty_like(zs)
    _kd_rows(zs, zt, np.ascontiguousarray(y), KINDS.index(kind), float(temperature), float(alpha),
             float(beta), 0, 1, losses, grad)
    return {name: v.astype(z_s.dtype) for name, v in token_mean(losses, grad, valid, z_s.shape).items()}


def kd_feature(student_features, teacher_features, projection):
    h_s, h_t, w = kd_feature_args(student_features, teacher_features, projection)
    hc, tc, wc = widen(h_s), widen(h_t), widen(w)
    residual = np.empty_like(tc)  # (N, Dt)
    _hint_residuals(hc, tc, wc, 0, 1, residual)
    grad_student, grad_projection = np.empty_like(hc), np.empty_like(wc)
    _hint_grads(hc, wc, residual, 0, 1, grad_student, grad_projection)
    dtype = h_s.dtype
    return {"loss": np.full(1, (residual * residual).sum() / (2 * hc.shape[0]), dtype=dtype),
            "grad_student": grad_student.astype(dtype), "grad_projection": grad_projection.astype(dtype)}


def kd_attention(student_attention, teacher_attention, kind="mse"):
    a_s, a_t = kd_attention_args(student_attention, teacher_attention, kind)
    s2 = widen(a_s.reshape(-1, a_s.shape[-1]))  # (B*H*L, K)
    row_loss, grad = np.empty(s2.shape[0], dtype=s2.dtype), np.empty_like(s2)
    _attention_rows(s2, widen(a_t.reshape(s2.shape)), kind == "kl", 0, 1, row_loss, grad)
    loss = row_loss.sum() / (s2.shape[0] if kind == "kl" else s2.size)
    return {"loss": np.full(1, loss, dtype=a_s.dtype), "grad": grad.reshape(a_s.shape).astype(a_s.dtype)}
