"""Distillation losses and their gradients on numba-cuda (reference: llmref.ref.kd): one
thread per token row (kd_loss), per product element (kd_feature) or per map row
(kd_attention) runs the shared loops of llmref.accel.kernels.kd into guarded buffers; the
valid token rows are gathered and averaged on the host by the reference's valid_rows /
token_mean. Checked by the reference's kd_*_args; float16/bfloat16 inputs are widened to
float32 on the host and every output rounded once.
"""
import numpy as np
from numba import cuda

from llmref.accel._host import widen
from llmref.accel.kernels import kd as kernels
from llmref.accel.numba_cuda._launch import THREADS, Guarded, grid
from llmref.ref.kd import (KINDS, kd_attention_args, kd_feature_args, kd_loss_args, token_mean,
                           valid_rows)

_kd_rows = cuda.jit(device=True)(kernels.kd_rows)
_hint_residuals = cuda.jit(device=True)(kernels.hint_residuals)
_hint_grads = cuda.jit(device=True)(kernels.hint_grads)
_attention_rows = cuda.jit(device=True)(kernels.attention_rows)


@cuda.jit
def _kd(zs, zt, labels, kind, temperature, alpha, beta, losses, grad):
    _kd_rows(zs, zt, labels, kind, temperature, alpha, beta, cuda.grid(1), cuda.gridsize(1),
             losses, grad)


@cuda.jit
def _residuals(h_s, h_t, w, residual):
    _hint_residuals(h_s, h_t, w, cuda.grid(1), cuda.gridsize(1), residual)


@cuda.jit
def _grads(h_s, w, residual, grad_student, grad_projection):
    _hint_grads(h_s, w, residual, cuda.grid(1), cuda.gridsize(1), grad_student, grad_projection)


@cuda.jit
def _attention(a_s, a_t, kl, row_loss, grad):
    _attention_rows(a_s, a_t, kl, cuda.grid(1), cuda.gridsize(1), row_loss, grad)


def kd_loss(student_logits, teacher_logits, labels, mask, kind="hinton", temperature=2.0,
            alpha=0.5, beta=0.5, ignore_index=-100):
    # The spec's signature and its one checker, as in every backend (the kernels differ below).
    z_s, z_t, labels, mask = kd_loss_args(student_logits, teacher_logits, labels, mask, kind,
                                          temperature, alpha, beta, ignore_index)
    valid, zs, zt, y = valid_rows(z_s, z_t, labels, mask, ignore_index)
    zs, zt = widen(zs), widen(zt)  # (n_valid, V)
    losses = Guarded(zs.shape[:1], zs.dtype, "numba-cuda kd_loss (loss)")
    grad = Guarded(zs.shape, zs.dtype, "numba-cuda kd_loss (grad)")
    _kd[grid(zs.shape[0]), THREADS](cuda.to_device(zs), cuda.to_device(zt),
                                    cuda.to_device(np.ascontiguousarray(y)), KINDS.index(kind),
                                    float(temperature), float(alpha), float(beta), losses.device,
                                    grad.device)
    means = token_mean(losses.result(), grad.result(), valid, z_s.shape)
    return {name: v.astype(z_s.dtype) for name, v in means.items()}


def kd_feature(student_features, teacher_features, projection):
    h_s, h_t, w = kd_feature_args(student_features, teacher_features, projection)
    hc, tc, wc = widen(h_s), widen(h_t), widen(w)
    (n, width), dt = hc.shape, tc.shape[1]
    d_h, d_w = cuda.to_device(hc), cuda.to_device(wc)
    d_residual = cuda.device_array((n, dt), dtype=hc.dtype)
    _residuals[grid(n * dt), THREADS](d_h, cuda.to_device(tc), d_w, d_residual)
    grad_student = Guarded((n, width), hc.dtype, "numba-cuda kd_feature (grad_student)")
    grad_projection = Guarded((dt, width), hc.dtype, "numba-cuda kd_feature (grad_projection)")
    _grads[grid((n + dt) * width), THREADS](d_h, d_w, d_residual, grad_student.device,
                                            grad_projection.device)
    residual = d_residual.copy_to_host()
    dtype = h_s.dtype
    return {"loss": np.full(1, (residual * residual).sum() / (2 * n), dtype=dtype),
            "grad_student": grad_student.result().astype(dtype),
            "grad_projection": grad_projection.result().astype(dtype)}


def kd_attention(student_attention, teacher_attention, kind="mse"):
    a_s, a_t = kd_attention_args(student_attention, teacher_attention, kind)
    s2 = widen(a_s.reshape(-1, a_s.shape[-1]))  # (B*H*L, K)
    d_loss = cuda.device_array(s2.shape[0], dtype=s2.dtype)
    grad = Guarded(s2.shape, s2.dtype, "numba-cuda kd_attention (grad)")
    _attention[grid(s2.shape[0]), THREADS](cuda.to_device(s2), cuda.to_device(widen(a_t.reshape(s2.shape))),
                                           kind == "kl", d_loss, grad.device)
    loss = d_loss.copy_to_host().sum() / (s2.shape[0] if kind == "kl" else s2.size)
    return {"loss": np.full(1, loss, dtype=a_s.dtype), "grad": grad.result().reshape(a_s.shape).astype(a_s.dtype)}
