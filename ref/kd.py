"""Knowledge-distillation losses with their analytic gradients (specs/kd_loss.yaml,
specs/kd_feature.yaml, specs/kd_attention.yaml).

Notation for one token with student logits z_s and teacher logits z_t over V classes:

    q = softmax(z_s / T)     student, softened        log q = log_softmax(z_s / T)
    p = softmax(z_t / T)     teacher, softened        log p = log_softmax(z_t / T)
    KL(a || b) = sum_v a_v (log a_v - log b_v)

Token-level reduction: a token is valid when mask is True and its label is not
`ignore_index`; loss = sum over valid tokens of l_i / number of valid tokens. The gradient is
d loss / d z_s, zero on invalid tokens.
"""
import numpy as np

from llmref.errors import InputError
from llmref.validate import float_array, int_array, integer, positive, same_size

KINDS = ("hinton", "forward_kl", "reverse_kl", "jsd")
ATTENTION_KINDS = ("mse", "kl")


def log_softmax_rows(x):
    """log_softmax over the last axis: (x - m) - log sum exp(x - m),  m = max x."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def kl_rows(log_a, log_b):
    """KL(a || b) per row = sum_v a_v (log a_v - log b_v); a_v = 0 contributes 0."""
    a = np.exp(log_a)
    return (a * (log_a - log_b)).sum(axis=-1)


def softmax_backward(q, g):
    """Gradient through q = softmax(s): dL/ds_v = q_v (g_v - sum_u q_u g_u),  g = dL/dq."""
    return q * (g - (q * g).sum(axis=-1, keepdims=True))


def forward_kl_token(log_q, log_p):
    """l = KL(p || q); dl/ds = q - p  (s = z_s / T)."""
    return kl_rows(log_p, log_q), np.exp(log_q) - np.exp(log_p)


def reverse_kl_token(log_q, log_p):
    """l = KL(q || p); dl/dq_v = log q_v - log p_v + 1, so dl/ds_v = q_v (log q_v - log p_v - l)."""
    loss = kl_rows(log_q, log_p)
    q = np.exp(log_q)
    return loss, q * (log_q - log_p - loss[..., None])


def jsd_token(log_q, log_p, beta):
    """Generalized JSD (GKD): l = beta KL(p || m) + (1 - beta) KL(q || m),
    m = beta p + (1 - beta) q. dl/dq_v = (1 - beta) log(q_v / m_v), then through softmax.

    The interior formula is 0 at beta in {0, 1}; the endpoints are defined as the limits used
    by TRL's generalized_jsd_loss: beta = 0 -> KL(p || q), beta = 1 -> KL(q || p).
    """
    if beta == 0:
        return forward_kl_token(log_q, log_p)
    if beta == 1:
        return reverse_kl_token(log_q, log_p)
    dtype = log_q.dtype
    log_m = np.logaddexp(log_p + dtype.type(np.log(beta)), log_q + dtype.type(np.log1p(-beta)))
    loss = dtype.type(beta) * kl_rows(log_p, log_m) + dtype.type(1 - beta) * kl_rows(log_q, log_m)
    grad = softmax_backward(np.exp(log_q), dtype.type(1 - beta) * (log_q - log_m))
    return loss, grad


def hinton_token(z_s, z_t, labels, temperature, alpha):
    """l = alpha T^2 KL(p_T || q_T) + (1 - alpha) CE(softmax(z_s), y)   (hard loss at T = 1).

    dl/dz_s = alpha T (q_T - p_T) + (1 - alpha) (softmax(z_s) - onehot(y)).
    """
    dtype = z_s.dtype
    t = dtype.type(temperature)
    soft, soft_grad = forward_kl_token(log_softmax_rows(z_s / t), log_softmax_rows(z_t / t))
    log_q1 = log_softmax_rows(z_s)  # (N, V) at T = 1
    rows = np.arange(z_s.shape[0])
    hard = -log_q1[rows, labels]
    hard_grad = np.exp(log_q1)
    hard_grad[rows, labels] -= 1
    a = dtype.type(alpha)
    loss = a * t * t * soft + (1 - a) * hard
    grad = a * t * soft_grad + (1 - a) * hard_grad  # T^2 * (1/T) from d(z_s/T)/dz_s
    return loss, grad


def valid_tokens(labels, mask, ignore_index):
    """Valid = mask & (labels != ignore_index)."""
    return mask & (labels != ignore_index)


def valid_rows(z_s, z_t, labels, mask, ignore_index):
    """The valid tokens of checked kd_loss arguments: (valid (N,), their student and teacher
    logit rows (n_valid, V), their labels (n_valid,)) with N the tokens of the leading dims.
    The backends gather their rows through this too."""
    vocab = z_s.shape[-1]
    valid = valid_tokens(labels, mask, ignore_index).reshape(-1)  # (N,)
    return valid, z_s.reshape(-1, vocab)[valid], z_t.reshape(-1, vocab)[valid], labels.reshape(-1)[valid]


def token_mean(per_token, dz, valid, shape):
    """{loss: sum_i l_i / n_valid (1,), grad: dl_i/dz_i / n_valid on the valid rows, 0 on the
    others, of `shape`}, in the dtype of per_token (n_valid,) and dz (n_valid, V). The backends
    reduce their rows through this too."""
    n_valid = per_token.dtype.type(per_token.shape[0])
    grad = np.zeros((valid.size, dz.shape[-1]), dtype=dz.dtype)
    grad[valid] = dz / n_valid
    return {"loss": np.full(1, per_token.sum() / n_valid, dtype=per_token.dtype),
            "grad": grad.reshape(shape)}


def _fraction(name, value):
    """A number in [0, 1]."""
    positive(name, value, allow_zero=True)
    if value > 1:
        raise InputError(f"{name}: must lie in [0, 1], got {value!r}")
    return value


def kd_loss_args(student_logits, teacher_logits, labels, mask, kind, temperature, alpha, beta,
                 ignore_index):
    """Validated (z_s, z_t, labels, mask) of kd_loss with the leading dims as given; every
    backend checks through this."""
    z_s = float_array("student_logits", student_logits, min_ndim=2)
    z_t = float_array("teacher_logits", teacher_logits, min_ndim=2)
    if z_t.shape != z_s.shape:
        raise InputError(f"teacher_logits: shape {z_t.shape} differs from student_logits {z_s.shape}")
    z_t = z_t.astype(z_s.dtype, copy=False)
    lead, vocab = z_s.shape[:-1], z_s.shape[-1]
    if vocab == 0:
        raise InputError("student_logits: has no classes (V = 0); a distribution needs one")
    labels = int_array("labels", labels)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise InputError(f"mask: expected a bool array, got dtype {mask.dtype}")
    for name, arr in (("labels", labels), ("mask", mask)):
        if arr.shape != lead:
            raise InputError(f"{name}: shape {arr.shape} must equal the logits' leading shape {lead}")
    if kind not in KINDS:
        raise InputError(f"kind: must be one of {KINDS}, got {kind!r}")
    positive("temperature", temperature)
    _fraction("alpha", alpha)
    _fraction("beta", beta)
    integer("ignore_index", ignore_index)
    valid = valid_tokens(labels, mask, ignore_index)
    bad = valid & ((labels < 0) | (labels >= vocab))
    if bad.any():
        raise InputError(f"labels: value {labels[bad][0]} is out of range [0, {vocab}) "
                         f"and is not ignore_index {ignore_index}")
    if not valid.any():
        raise InputError("mask: no valid token (every position is masked or ignore_index); "
                         "the mean over zero tokens is undefined")
    return z_s, z_t, labels, mask


def kd_loss(student_logits, teacher_logits, labels, mask, kind="hinton", temperature=2.0,
            alpha=0.5, beta=0.5, ignore_index=-100):
    """Token-level distillation loss and its gradient w.r.t. the student logits.

    loss = (1 / n_valid) sum_{valid i} l_i,   grad_i = valid_i * dl_i/dz_s,i / n_valid
    l_i per `kind`: hinton (alpha T^2 KL(p||q) + (1-alpha) CE at T=1), forward_kl KL(p||q),
    reverse_kl KL(q||p), jsd (generalized JSD with beta); the divergences compare the
    softened distributions and, as in TRL, carry no T^2 factor.
    """
    z_s, z_t, labels, mask = kd_loss_args(student_logits, teacher_logits, labels, mask, kind,
                                          temperature, alpha, beta, ignore_index)
    valid, zs, zt, y = valid_rows(z_s, z_t, labels, mask, ignore_index)  # (n_valid, V) rows
    t = z_s.dtype.type(temperature)
    if kind == "hinton":
        per_token, dz = hinton_token(zs, zt, y, temperature, alpha)
    else:
        log_q, log_p = log_softmax_rows(zs / t), log_softmax_rows(zt / t)
        if kind == "forward_kl":
            per_token, ds = forward_kl_token(log_q, log_p)
        elif kind == "reverse_kl":
            per_token, ds = reverse_kl_token(log_q, log_p)
        else:
            per_token, ds = jsd_token(log_q, log_p, beta)
        dz = ds / t
    return token_mean(per_token, dz, valid, z_s.shape)


def kd_feature_args(student_features, teacher_features, projection):
    """Validated (h_s, h_t, W) of kd_feature, in the student's dtype: rank, values, widths,
    and at least one row (the loss is a mean over rows); every backend checks through this."""
    h_s = float_array("student_features", student_features, ndim=2)
    if h_s.shape[0] == 0:
        raise InputError("student_features: has no rows (N = 0); the loss is a mean over rows")
    h_t = float_array("teacher_features", teacher_features, ndim=2).astype(h_s.dtype, copy=False)
    w = float_array("projection", projection, ndim=2).astype(h_s.dtype, copy=False)
    same_size("teacher_features", h_t.shape[0], h_s.shape[0], "the number of student rows")
    same_size("projection", w.shape[0], h_t.shape[1], "the teacher feature width")
    same_size("projection", w.shape[1], h_s.shape[1], "the student feature width")
    return h_s, h_t, w


def kd_feature(student_features, teacher_features, projection):
    """FitNets hint loss: L = 1/(2N) sum_i || W h_s,i - h_t,i ||^2  (W: (Dt, Ds), learned).

    r_i = W h_s,i - h_t,i;  dL/dh_s = W^T r / N;  dL/dW = r^T h_s / N.
    """
    h_s, h_t, w = kd_feature_args(student_features, teacher_features, projection)
    n = h_s.dtype.type(h_s.shape[0])
    residual = h_s @ w.T - h_t  # (N, Dt)
    loss = (residual * residual).sum() / (2 * n)
    return {"loss": np.full(1, loss, dtype=h_s.dtype),
            "grad_student": residual @ w / n,  # (N, Ds)
            "grad_projection": residual.T @ h_s / n}  # (Dt, Ds)


def kd_attention_args(student_attention, teacher_attention, kind, values=True):
    """Validated (A_s, A_t) of kd_attention, in the student's dtype: shape, sign, kind and KL
    support, and no empty axis (a map row of length 0 is no distribution, and the loss is a
    mean over rows); every backend checks through this. With values=False the maps' values
    are not read (no NaN, inf, sign or support check): a backend that finds a NaN, inf or
    negative entry in its own pass over the maps calls again with values=True for the error."""
    special = {} if values else {"allow_nan": True, "allow_inf": True}
    a_s = float_array("student_attention", student_attention, ndim=4, **special)
    if a_s.size == 0:
        raise InputError(f"student_attention: is empty (shape {a_s.shape}); the loss is a mean "
                         "over map rows")
    a_t = float_array("teacher_attention", teacher_attention, ndim=4, **special).astype(a_s.dtype, copy=False)
    if a_t.shape != a_s.shape:
        raise InputError(f"teacher_attention: shape {a_t.shape} differs from student_attention {a_s.shape}")
    if not values:
        if kind not in ATTENTION_KINDS:
            raise InputError(f"kind: must be one of {ATTENTION_KINDS}, got {kind!r}")
        return a_s, a_t
    if (a_s < 0).any():
        raise InputError("student_attention: attention maps must be non-negative")
    if (a_t < 0).any():
        raise InputError("teacher_attention: attention maps must be non-negative")
    if kind not in ATTENTION_KINDS:
        raise InputError(f"kind: must be one of {ATTENTION_KINDS}, got {kind!r}")
    if kind == "kl" and ((a_s == 0) & (a_t > 0)).any():
        raise InputError("student_attention: is 0 where the teacher's is > 0 (KL is infinite)")
    return a_s, a_t


def kd_attention(student_attention, teacher_attention, kind="mse"):
    """Attention-map distillation over maps A of shape (B, H, Lq, Lk), rows summing to 1.

    mse: L = 1/(B H Lq Lk) sum (A_s - A_t)^2,       dL/dA_s = 2 (A_s - A_t) / (B H Lq Lk)
    kl:  L = 1/(B H Lq) sum_rows KL(A_t || A_s),    dL/dA_s = -A_t / A_s / (B H Lq)
         (MiniLM-style; A_t = 0 contributes 0; A_s must be > 0 where A_t > 0)
    """
    a_s, a_t = kd_attention_args(student_attention, teacher_attention, kind)
    if kind == "mse":
        diff = a_s - a_t
        n = a_s.dtype.type(a_s.size)
        return {"loss": np.full(1, (diff * diff).sum() / n, dtype=a_s.dtype), "grad": 2 * diff / n}
    rows = a_s.dtype.type(a_s.size // a_s.shape[-1])
    support = a_t > 0
    safe_s = np.where(support, a_s, 1)
    safe_t = np.where(support, a_t, 1)
    loss = (a_t * (np.log(safe_t) - np.log(safe_s))).sum() / rows
    return {"loss": np.full(1, loss, dtype=a_s.dtype), "grad": -a_t / safe_s / rows}


# --- case generators (specs/kd_attention.yaml) ---


def attention_maps_case(rng, B, H, L, K):
    """Case generator: student and teacher attention maps, softmax rows of N(0, 1.5^2) scores.

    The unnormalised weights are rounded to float32 before the (exactly reproducible) division:
    vectorised float64 exp differs by an ulp between CPUs (SVML on AVX-512), and the inputs
    must be bit-identical on every machine.
    """
    scores = rng.normal(0.0, 1.5, size=(2, B, H, L, K))  # (student|teacher, B, H, L, K)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True)).astype(np.float32)
    maps = weights.astype(np.float64) / weights.sum(axis=-1, keepdims=True, dtype=np.float64)
    return {"student_attention": maps[0], "teacher_attention": maps[1]}
