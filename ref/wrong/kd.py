"""Wrong distillation-loss variants seen in the wild; each must fail its audit."""
import numpy as np

from llmref.ref import kd


def _reduce(student_logits, teacher_logits, labels, mask, kind, temperature, alpha, beta,
            ignore_index, token_fn, divisor=None):
    """The reference's per-valid-token mean around a replaced per-token function."""
    z_s, z_t, labels, mask = kd.kd_loss_args(student_logits, teacher_logits, labels, mask, kind,
                                             temperature, alpha, beta, ignore_index)
    vocab = z_s.shape[-1]
    valid = kd.valid_tokens(labels, mask, ignore_index).reshape(-1)
    per_token, dz = token_fn(z_s.reshape(-1, vocab)[valid], z_t.reshape(-1, vocab)[valid],
                             labels.reshape(-1)[valid])
    n = divisor(valid.size, vocab) if divisor else valid.sum()
    grad = np.zeros((valid.size, vocab))
    grad[valid] = dz / n
    return {"loss": np.atleast_1d(per_token.sum() / n), "grad": grad.reshape(z_s.shape)}


def _divergence(kind, temperature, beta):
    def token(zs, zt, y):
        log_q, log_p = kd.log_softmax_rows(zs / temperature), kd.log_softmax_rows(zt / temperature)
        fn = {"forward_kl": kd.forward_kl_token, "reverse_kl": kd.reverse_kl_token}.get(kind)
        loss, ds = fn(log_q, log_p) if fn else kd.jsd_token(log_q, log_p, beta)
        return loss, ds / temperature
    return token


def kd_loss_without_t_squared(student_logits, teacher_logits, labels, mask, kind="hinton",
                              temperature=2.0, alpha=0.5, beta=0.5, ignore_index=-100):
    """alpha * KL(p_T || q_T) + (1 - alpha) CE: the soft term lacks T^2."""
    def token(zs, zt, y):
        loss, grad = kd.hinton_token(zs, zt, y, 1.0, 0.0)  # the hard part at T = 1
        soft, ds = kd.forward_kl_token(kd.log_softmax_rows(zs / temperature),
                                       kd.log_softmax_rows(zt / temperature))
        return alpha * soft + (1 - alpha) * loss, alpha * ds / temperature + (1 - alpha) * grad
    fn = token if kind == "hinton" else _divergence(kind, temperature, beta)
    return _reduce(student_logits, teacher_logits, labels, mask, kind, temperature, alpha, beta,
                   ignore_index, fn)


def kd_loss_kl_swapped(student_logits, teacher_logits, labels, mask, kind="hinton",
                       temperature=2.0, alpha=0.5, beta=0.5, ignore_index=-100):
    """Every forward KL(p || q) computed as KL(q || p) (kl_div(p, log q) argument swap)."""
    def token(zs, zt, y):
        t = temperature
        rev, ds = kd.reverse_kl_token(kd.log_softmax_rows(zs / t), kd.log_softmax_rows(zt / t))
        if kind != "hinton":
            return rev, ds / t
        hard, hard_grad = kd.hinton_token(zs, zt, y, 1.0, 0.0)
        return alpha * t * t * rev + (1 - alpha) * hard, alpha * t * ds + (1 - alpha) * hard_grad
    swapped = kind == "hinton" or kind == "forward_kl" or (kind == "jsd" and beta == 0)
    fn = token if swapped else _divergence(kind, temperature, beta)
    return _reduce(student_logits, teacher_logits, labels, mask, kind, temperature, alpha, beta,
                   ignore_index, fn)


def kd_loss_mean_over_all_elements(student_logits, teacher_logits, labels, mask, kind="hinton",
                                   temperature=2.0, alpha=0.5, beta=0.5, ignore_index=-100):
    """Masked sum divided by B*L*V (torch reduction='mean') instead of n_valid."""
    fn = ((lambda zs, zt, y: kd.hinton_token(zs, zt, y, temperature, alpha)) if kind == "hinton"
          else _divergence(kind, temperature, beta))
    return _reduce(student_logits, teacher_logits, labels, mask, kind, temperature, alpha, beta,
                   ignore_index, fn, divisor=lambda tokens, vocab: tokens * vocab)


def kd_loss_hard_loss_softened(student_logits, teacher_logits, labels, mask, kind="hinton",
                               temperature=2.0, alpha=0.5, beta=0.5, ignore_index=-100):
    """The hard cross-entropy evaluated on z_s / T."""
    def token(zs, zt, y):
        t = temperature
        soft, ds = kd.forward_kl_token(kd.log_softmax_rows(zs / t), kd.log_softmax_rows(zt / t))
        hard, hard_grad = kd.hinton_token(zs / t, zt, y, 1.0, 0.0)
        return alpha * t * t * soft + (1 - alpha) * hard, alpha * t * ds + (1 - alpha) * hard_grad / t
    fn = token if kind == "hinton" else _divergence(kind, temperature, beta)
    return _reduce(student_logits, teacher_logits, labels, mask, kind, temperature, alpha, beta,
                   ignore_index, fn)


def kd_loss_jsd_interior_at_endpoints(student_logits, teacher_logits, labels, mask, kind="hinton",
                                      temperature=2.0, alpha=0.5, beta=0.5, ignore_index=-100):
    """beta*KL(p||m) + (1-beta)*KL(q||m) used at beta in {0, 1} too, where it is 0."""
    if kind != "jsd" or 0 < beta < 1:
        return kd.kd_loss(student_logits, teacher_logits, labels, mask, kind, temperature, alpha,
                          beta, ignore_index)

    def token(zs, zt, y):
        log_q, log_p = kd.log_softmax_rows(zs / temperature), kd.log_softmax_rows(zt / temperature)
        with np.errstate(divide="ignore"):
            log_m = np.logaddexp(log_p + np.log(beta), log_q + np.log1p(-beta))
        loss = beta * kd.kl_rows(log_p, log_m) + (1 - beta) * kd.kl_rows(log_q, log_m)
        grad = kd.softmax_backward(np.exp(log_q), (1 - beta) * (log_q - log_m))
        return loss, grad / temperature
    return _reduce(student_logits, teacher_logits, labels, mask, kind, temperature, alpha, beta,
                   ignore_index, token)


def kd_feature_mean_over_elements(student_features, teacher_features, projection):
    """torch MSELoss: mean over all N*DT residual entries, without FitNets' 1/2."""
    out = kd.kd_feature(student_features, teacher_features, projection)
    scale = 2.0 / np.asarray(teacher_features).shape[1]
    return {k: v * scale for k, v in out.items()}


def kd_feature_gradient_not_transposed(student_features, teacher_features, projection):
    out = kd.kd_feature(student_features, teacher_features, projection)
    h_s = np.asarray(student_features)
    residual = h_s @ np.asarray(projection).T - np.asarray(teacher_features)
    out["grad_projection"] = (h_s.T @ residual / h_s.shape[0]).reshape(out["grad_projection"].shape)
    return out


def kd_attention_kl_swapped(student_attention, teacher_attention, kind="mse"):
    if kind != "kl":
        return kd.kd_attention(student_attention, teacher_attention, kind)
    a_s, a_t = np.asarray(student_attention), np.asarray(teacher_attention)
    rows = a_s.size // a_s.shape[-1]
    loss = np.sum(a_s * (np.log(a_s) - np.log(a_t))) / rows
    return {"loss": np.full(1, loss), "grad": (np.log(a_s) - np.log(a_t) + 1) / rows}


def kd_attention_mean_over_rows(student_attention, teacher_attention, kind="mse"):
    out = kd.kd_attention(student_attention, teacher_attention, kind)
    if kind == "mse":
        k = np.asarray(student_attention).shape[-1]
        out = {name: value * k for name, value in out.items()}
    return out
